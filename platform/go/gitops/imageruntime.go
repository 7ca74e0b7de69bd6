package main

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/go-containerregistry/pkg/name"
	"github.com/google/go-containerregistry/pkg/v1/remote"
	"github.com/google/go-containerregistry/pkg/v1/remote/transport"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// The image runtime plays the one part of a kubelet that KWOK leaves out: pulling the image. A pod
// labelled opslab.dev/runtime=registry runs only what the platform's registry holds. The verdict
// goes into the pod's label opslab.dev/image, and KWOK's stages (platform/kwok/stages) act on it:
//
//	pulled   every container's image is in the registry: the pod starts and turns Ready
//	unready  an image's config has the label dev.opslab.ready=false: it runs, its readiness fails
//	missing  an image is not in the registry (or names another registry, which cannot be reached
//	         here): the pod stays Pending in ErrImagePull, and the pull is tried again
//
// A verdict of pulled or unready is final for the pod, as a started container keeps its image
// when a tag moves; only a missing image is looked up again. Pods without the label are KWOK's
// as before: every image "runs".
const (
	RuntimeLabel     = "opslab.dev/runtime"
	RuntimeRegistry  = "registry"
	ImageLabel       = "opslab.dev/image"
	ReadyConfigLabel = "dev.opslab.ready"
	pulled           = "pulled"
	unready          = "unready"
	missing          = "missing"
	pullRetry        = 10 * time.Second
)

// ImageRuntimeReconciler decides, for each pod of the registry runtime, whether its images pull.
type ImageRuntimeReconciler struct {
	client.Client
	Registry  string // host:port of the platform's registry (plain HTTP, 127.0.0.1)
	Recorder  record.EventRecorder
	Transport http.RoundTripper
}

func (r *ImageRuntimeReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		Named("imageruntime").
		For(&corev1.Pod{}, builder.WithPredicates(predicate.NewPredicateFuncs(func(o client.Object) bool {
			return o.GetLabels()[RuntimeLabel] == RuntimeRegistry && o.GetDeletionTimestamp().IsZero()
		}))).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

func (r *ImageRuntimeReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	var pod corev1.Pod
	if err := r.Get(ctx, req.NamespacedName, &pod); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	current := pod.Labels[ImageLabel]
	if !pod.DeletionTimestamp.IsZero() || current == pulled || current == unready {
		return ctrl.Result{}, nil
	}
	verdict, message, err := r.pull(ctx, &pod)
	if err != nil {
		return ctrl.Result{}, err // the registry did not answer: try again with back-off
	}
	if current != verdict {
		patch := client.MergeFrom(pod.DeepCopy())
		pod.Labels[ImageLabel] = verdict
		if err := r.Patch(ctx, &pod, patch); err != nil {
			return ctrl.Result{}, client.IgnoreNotFound(err)
		}
		if verdict == missing {
			r.Recorder.Event(&pod, corev1.EventTypeWarning, "Failed", message)
		} else {
			r.Recorder.Event(&pod, corev1.EventTypeNormal, "Pulled", message)
		}
	}
	if verdict == missing {
		return ctrl.Result{RequeueAfter: pullRetry}, nil
	}
	return ctrl.Result{}, nil
}

// pull looks every container's image up in the registry: the verdict and what to tell the user.
func (r *ImageRuntimeReconciler) pull(ctx context.Context, pod *corev1.Pod) (string, string, error) {
	var pulledImages []string
	containers := append(append([]corev1.Container{}, pod.Spec.InitContainers...), pod.Spec.Containers...)
	for _, container := range containers {
		image := container.Image
		if !strings.HasPrefix(image, r.Registry+"/") {
			return missing, fmt.Sprintf("Failed to pull image %q: only the platform's registry %s can be reached "+
				"(push the image there and name it %s/...)", image, r.Registry, r.Registry), nil
		}
		ref, err := name.ParseReference(image, name.Insecure)
		if err != nil {
			return missing, fmt.Sprintf("Failed to pull image %q: %v", image, err), nil
		}
		found, err := remote.Image(ref, remote.WithContext(ctx), remote.WithTransport(r.transport()))
		var terr *transport.Error
		if errors.As(err, &terr) && (terr.StatusCode == http.StatusNotFound) {
			return missing, fmt.Sprintf("Failed to pull image %q: not found in the registry (ErrImagePull)", image), nil
		}
		if err != nil {
			return "", "", fmt.Errorf("pull %s: %w", image, err)
		}
		config, err := found.ConfigFile()
		if err != nil {
			return "", "", fmt.Errorf("config of %s: %w", image, err)
		}
		digest, err := found.Digest()
		if err != nil {
			return "", "", err
		}
		if config.Config.Labels[ReadyConfigLabel] == "false" {
			return unready, fmt.Sprintf("Pulled image %q (%s); its readiness probe will fail (%s=false)",
				image, digest, ReadyConfigLabel), nil
		}
		pulledImages = append(pulledImages, fmt.Sprintf("%q (%s)", image, digest))
	}
	return pulled, "Successfully pulled image " + strings.Join(pulledImages, ", "), nil
}

func (r *ImageRuntimeReconciler) transport() http.RoundTripper {
	if r.Transport != nil {
		return r.Transport
	}
	return http.DefaultTransport
}
