// Command selfhealingapp-operator is lab 2's operator, Go track: write it with controller-runtime
// (see README.md, "Go track"). As it stands it starts, watches SelfHealingApps and does nothing.
//
// Run it by hand against your platform:
//
//	source .opslab/env
//	kubectl apply -f labs/02-operator/starter/crd.yaml
//	cd labs/02-operator/starter/go && go run . --namespace default
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"k8s.io/apimachinery/pkg/runtime"
	clientgoscheme "k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/cache"
	"sigs.k8s.io/controller-runtime/pkg/client"
	metricsserver "sigs.k8s.io/controller-runtime/pkg/metrics/server"
)

// Reconciler is called with the name of a SelfHealingApp each time it, or something it watches,
// changes.
type Reconciler struct {
	client.Client
	Scheme *runtime.Scheme
}

func (r *Reconciler) SetupWithManager(manager ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(manager).
		For(&SelfHealingApp{}).
		// TODO task 4: also watch the children the app owns, so that a hand edit (drift) is put back
		Complete(r)
}

func (r *Reconciler) Reconcile(ctx context.Context, request ctrl.Request) (ctrl.Result, error) {
	app := &SelfHealingApp{}
	if err := r.Get(ctx, request.NamespacedName, app); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	// TODO task 2: create the Deployment, Service and PodDisruptionBudget, owned by the app
	// TODO task 3: report status.conditions (Ready, Progressing, Degraded) and observedGeneration
	// TODO task 4: reconcile updates, and put back hand edits (drift) without writing when nothing differs
	// TODO task 5: on errors, report Degraded and retry with a delay
	// TODO task 6: a finalizer that removes the app from the ConfigMap selfhealingapp-registry
	ctrl.LoggerFrom(ctx).Info(fmt.Sprintf("%s/%s wants %d x %s; nothing is done yet",
		app.Namespace, app.Name, app.Spec.ReplicasOrDefault(), app.Spec.Image))
	return ctrl.Result{}, nil
}

func main() {
	namespace := flag.String("namespace", "", "watch only this namespace (default: every namespace)")
	flag.Parse()
	ctrl.SetLogger(klog.NewKlogr())
	if err := run(*namespace); err != nil {
		ctrl.Log.Error(err, "the operator stopped")
		os.Exit(1)
	}
}

func run(namespace string) error {
	scheme := runtime.NewScheme()
	if err := clientgoscheme.AddToScheme(scheme); err != nil {
		return err
	}
	if err := SchemeBuilder.AddToScheme(scheme); err != nil {
		return err
	}
	config, err := ctrl.GetConfig() // from $KUBECONFIG
	if err != nil {
		return fmt.Errorf("no Kubernetes configuration: %w", err)
	}
	options := ctrl.Options{Scheme: scheme, Metrics: metricsserver.Options{BindAddress: "0"}}
	if namespace != "" {
		options.Cache.DefaultNamespaces = map[string]cache.Config{namespace: {}}
	}
	manager, err := ctrl.NewManager(config, options)
	if err != nil {
		return err
	}
	reconciler := &Reconciler{Client: manager.GetClient(), Scheme: manager.GetScheme()}
	if err := reconciler.SetupWithManager(manager); err != nil {
		return err
	}
	return manager.Start(ctrl.SetupSignalHandler()) // until SIGTERM or SIGINT
}
