// Command opslab-gitops reconciles Flux's GitRepository (source.toolkit.fluxcd.io/v1) and
// Kustomization (kustomize.toolkit.fluxcd.io/v1) objects with Flux's own libraries: go-git pulls,
// fluxcd/pkg/kustomize builds, fluxcd/pkg/ssa applies server-side, prunes by inventory and waits
// for health. It honours a documented subset of the API; a field outside it is reported in the
// object's Ready condition (reason UnsupportedField), never silently ignored.
//
// `opslab-gitops git-server` serves Git repositories over HTTP on 127.0.0.1 (see gitserver.go).
package main

import (
	"flag"
	"fmt"
	"os"
	"time"

	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/healthz"
	"sigs.k8s.io/controller-runtime/pkg/log/zap"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// version is set at build time: the digest of this module's sources.
var version = "dev"

func main() {
	if len(os.Args) > 1 && (os.Args[1] == "version" || os.Args[1] == "--version") {
		fmt.Println("opslab-gitops", version)
		return
	}
	if len(os.Args) > 1 && os.Args[1] == "git-server" {
		if err := gitServer(os.Args[2:]); err != nil {
			fmt.Fprintf(os.Stderr, "opslab-gitops git-server: %v\n", err)
			os.Exit(1)
		}
		return
	}
	var dataDir, probeAddr, metricsAddr, crds, defaultServiceAccount string
	var dependencyRequeue time.Duration
	var noCrossNamespaceRefs bool
	var imageRegistry string
	flag.StringVar(&imageRegistry, "image-registry", "",
		"run the image runtime for pods labelled opslab.dev/runtime=registry, pulling from this host:port")
	flag.BoolVar(&noCrossNamespaceRefs, "no-cross-namespace-refs", false,
		"refuse a Kustomization's sourceRef or dependsOn in another namespace")
	flag.StringVar(&dataDir, "data-dir", "", "where fetched revisions are kept (required)")
	flag.StringVar(&probeAddr, "health-addr", "127.0.0.1:0", "address of /healthz and /readyz")
	flag.StringVar(&metricsAddr, "metrics-addr", "0", "address of /metrics (0: off)")
	flag.StringVar(&crds, "crds", "", "apply the CRDs in this directory at start and wait until they are served")
	flag.StringVar(&defaultServiceAccount, "default-service-account", "",
		"service account (in each Kustomization's namespace) to act as when it names none; empty: the reconciler's own identity")
	flag.DurationVar(&dependencyRequeue, "requeue-dependency", 5*time.Second,
		"how soon a Kustomization waiting on dependsOn looks again")
	opts := zap.Options{}
	opts.BindFlags(flag.CommandLine)
	flag.Parse()
	ctrl.SetLogger(zap.New(zap.UseFlagOptions(&opts)))
	if dataDir == "" {
		fmt.Fprintln(os.Stderr, "opslab-gitops: --data-dir is required (where fetched revisions are kept)")
		os.Exit(2)
	}
	lockdown := lockdown{defaultServiceAccount: defaultServiceAccount, noCrossNamespaceRefs: noCrossNamespaceRefs}
	if err := run(dataDir, probeAddr, metricsAddr, crds, imageRegistry, lockdown, dependencyRequeue); err != nil {
		fmt.Fprintf(os.Stderr, "opslab-gitops: %v\n", err)
		os.Exit(1)
	}
}

func newScheme() (*runtime.Scheme, error) {
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{
		clientgoscheme.AddToScheme, sourcev1.AddToScheme, kustomizev1.AddToScheme,
	} {
		if err := add(scheme); err != nil {
			return nil, err
		}
	}
	return scheme, nil
}

// lockdown is Flux's multi-tenancy lockdown: who a Kustomization acts as, and where it may refer.
type lockdown struct {
	defaultServiceAccount string
	noCrossNamespaceRefs  bool
}

func run(dataDir, probeAddr, metricsAddr, crds, imageRegistry string, lockdown lockdown, dependencyRequeue time.Duration) error {
	scheme, err := newScheme()
	if err != nil {
		return err
	}
	cfg, err := ctrl.GetConfig()
	if err != nil {
		return fmt.Errorf("no kubeconfig: %w (set KUBECONFIG or --kubeconfig)", err)
	}
	ctx := ctrl.SetupSignalHandler()
	if crds != "" {
		if err := installCRDs(ctx, cfg, crds); err != nil {
			return err
		}
	}
	mgr, err := ctrl.NewManager(cfg, ctrl.Options{
		Scheme:                 scheme,
		Metrics:                metricsserver.Options{BindAddress: metricsAddr},
		HealthProbeBindAddress: probeAddr,
		// Only the image runtime's pods are watched (and cached), not every pod of the cluster.
		Cache: cache.Options{ByObject: map[client.Object]cache.ByObject{
			&corev1.Pod{}: {Label: labels.SelectorFromSet(labels.Set{RuntimeLabel: RuntimeRegistry})},
		}},
	})
	if err != nil {
		return err
	}
	if err := (&GitRepositoryReconciler{
		Client: mgr.GetClient(), DataDir: dataDir, Recorder: mgr.GetEventRecorderFor("source-controller"),
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if err := (&KustomizationReconciler{
		Client: mgr.GetClient(), Mapper: mgr.GetRESTMapper(), DataDir: dataDir,
		Recorder: mgr.GetEventRecorderFor("kustomize-controller"), DependencyRequeue: dependencyRequeue,
		Config: mgr.GetConfig(), DefaultServiceAccount: lockdown.defaultServiceAccount,
		NoCrossNamespaceRefs: lockdown.noCrossNamespaceRefs, Reader: mgr.GetAPIReader(),
	}).SetupWithManager(mgr); err != nil {
		return err
	}
	if imageRegistry != "" {
		if err := (&ImageRuntimeReconciler{
			Client: mgr.GetClient(), Registry: imageRegistry, Recorder: mgr.GetEventRecorderFor("kubelet"),
		}).SetupWithManager(mgr); err != nil {
			return err
		}
	}
	if err := mgr.AddHealthzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	if err := mgr.AddReadyzCheck("ping", healthz.Ping); err != nil {
		return err
	}
	return mgr.Start(ctx)
}
