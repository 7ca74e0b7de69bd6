package main

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/equality"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/intstr"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/utils/ptr"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

const (
	finalizer = "labs.opslab.dev/registry"
	registry  = "selfhealingapp-registry"
)

// Reconciler makes the world match one SelfHealingApp each time it is called.
type Reconciler struct {
	client.Client               // reads from the manager's cache, writes to the API server
	Live          client.Reader // reads from the API server itself
	Scheme        *runtime.Scheme
}

func (r *Reconciler) SetupWithManager(manager ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(manager).
		For(&SelfHealingApp{}).
		// A change to a child queues its controller-owner: a hand edit is put back at once, and the
		// Deployment's rollout progress reaches the app's status without polling.
		Owns(&appsv1.Deployment{}).
		Owns(&corev1.Service{}).
		Owns(&policyv1.PodDisruptionBudget{}).
		// The registry is shared (no app owns it): a change to it queues every app of its namespace,
		// so a hand-edited entry is put back too. No periodic resync is needed.
		Watches(&corev1.ConfigMap{}, handler.EnqueueRequestsFromMapFunc(r.appsOfRegistry),
			builder.WithPredicates(predicate.NewPredicateFuncs(func(object client.Object) bool {
				return object.GetName() == registry
			}))).
		WithOptions(controller.Options{
			// A failed reconcile is retried after 1 s, 2 s, 4 s, 8 s, then every 10 s. The default goes
			// from 5 ms up to 16 minutes, and would leave a cleared conflict unnoticed for minutes.
			RateLimiter: workqueue.NewTypedItemExponentialFailureRateLimiter[reconcile.Request](time.Second, 10*time.Second),
		}).
		Complete(r)
}

func (r *Reconciler) Reconcile(ctx context.Context, request ctrl.Request) (ctrl.Result, error) {
	app := &SelfHealingApp{}
	if err := r.Get(ctx, request.NamespacedName, app); err != nil {
		// Gone: its children go with it (garbage collection follows their ownerReferences).
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !app.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, app)
	}
	if !controllerutil.ContainsFinalizer(app, finalizer) {
		// Before the app is registered, so that no registry entry can outlive its app. With the
		// optimistic lock the patch fails, rather than drop a finalizer someone added meanwhile.
		patch := client.MergeFromWithOptions(app.DeepCopy(), client.MergeFromWithOptimisticLock{})
		controllerutil.AddFinalizer(app, finalizer)
		if err := r.Patch(ctx, app, patch); err != nil {
			return ctrl.Result{}, err
		}
	}
	deployment, err := r.reconcileChildren(ctx, app)
	if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
		return ctrl.Result{}, err // the cache was behind the API server: retry, nothing to report
	}
	if err != nil {
		// Report it, then return it: the controller logs it and retries with backoff.
		return ctrl.Result{}, errors.Join(err, r.writeStatus(ctx, app, failed(err)...))
	}
	return ctrl.Result{}, r.writeStatus(ctx, app, progress(app, deployment)...)
}

// appsOfRegistry maps a change of a namespace's registry to a reconcile of each app there.
func (r *Reconciler) appsOfRegistry(ctx context.Context, object client.Object) []reconcile.Request {
	apps := &SelfHealingAppList{}
	if err := r.List(ctx, apps, client.InNamespace(object.GetNamespace())); err != nil {
		ctrl.LoggerFrom(ctx).Error(err, "cannot list the apps of a registry", "namespace", object.GetNamespace())
		return nil
	}
	requests := make([]reconcile.Request, 0, len(apps.Items))
	for _, app := range apps.Items {
		requests = append(requests, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: app.Namespace, Name: app.Name}})
	}
	return requests
}

// reconcileChildren creates or corrects the app's Deployment, Service and PodDisruptionBudget
// and registers the app; it returns the Deployment, whose status tells how the rollout goes.
func (r *Reconciler) reconcileChildren(ctx context.Context, app *SelfHealingApp) (*appsv1.Deployment, error) {
	name := metav1.ObjectMeta{Name: app.Name, Namespace: app.Namespace}
	deployment := &appsv1.Deployment{ObjectMeta: name}
	if err := r.ensure(ctx, app, "Deployment", deployment, func() { desiredDeployment(app, deployment) }); err != nil {
		return nil, err
	}
	service := &corev1.Service{ObjectMeta: name}
	if err := r.ensure(ctx, app, "Service", service, func() { desiredService(app, service) }); err != nil {
		return nil, err
	}
	budget := &policyv1.PodDisruptionBudget{ObjectMeta: name}
	if err := r.ensure(ctx, app, "PodDisruptionBudget", budget, func() { desiredBudget(app, budget) }); err != nil {
		return nil, err
	}
	return deployment, r.register(ctx, app)
}

// ensure creates the child, or corrects it if it differs from what the app wants. CreateOrUpdate
// reads the child, lets set() change it, and writes only if that changed something.
func (r *Reconciler) ensure(ctx context.Context, app *SelfHealingApp, kind string, child client.Object, set func()) error {
	result, err := controllerutil.CreateOrUpdate(ctx, r.Client, child, func() error {
		// An object of that name that is not ours belongs to someone else: report, never take over.
		if child.GetUID() != "" && !metav1.IsControlledBy(child, app) {
			return fmt.Errorf("a %s named %s exists and is not owned by this app; remove or rename it", kind, child.GetName())
		}
		set()
		return controllerutil.SetControllerReference(app, child, r.Scheme)
	})
	if result != controllerutil.OperationResultNone {
		ctrl.LoggerFrom(ctx).Info("wrote a child", "kind", kind, "operation", result)
	}
	return err
}

// The desired* functions set only the fields the app decides. The API server fills in defaults
// (a container's pull policy, a port's protocol ...); overwriting whole structs would erase
// them, and every reconcile would then see a difference and send an update.

func desiredDeployment(app *SelfHealingApp, deployment *appsv1.Deployment) {
	setLabels(&deployment.ObjectMeta, app)
	deployment.Spec.Replicas = ptr.To(app.Spec.ReplicasOrDefault())
	if deployment.Spec.Selector == nil { // immutable: set once, at creation
		deployment.Spec.Selector = &metav1.LabelSelector{MatchLabels: selector(app)}
	}
	setLabels(&deployment.Spec.Template.ObjectMeta, app)
	pod := &deployment.Spec.Template.Spec
	if len(pod.Containers) == 0 {
		pod.Containers = []corev1.Container{{Name: "app"}}
	}
	pod.Containers[0].Image = app.Spec.Image
	pod.Containers[0].Ports = []corev1.ContainerPort{{ContainerPort: app.Spec.PortOrDefault(), Protocol: corev1.ProtocolTCP}}
}

func desiredService(app *SelfHealingApp, service *corev1.Service) {
	setLabels(&service.ObjectMeta, app)
	port := app.Spec.PortOrDefault()
	service.Spec.Selector = selector(app)
	service.Spec.Ports = []corev1.ServicePort{{Port: port, TargetPort: intstr.FromInt32(port), Protocol: corev1.ProtocolTCP}}
}

func desiredBudget(app *SelfHealingApp, budget *policyv1.PodDisruptionBudget) {
	setLabels(&budget.ObjectMeta, app)
	budget.Spec.MinAvailable = ptr.To(intstr.FromInt32(app.Spec.MinAvailableOrDefault()))
	budget.Spec.Selector = &metav1.LabelSelector{MatchLabels: selector(app)}
}

func selector(app *SelfHealingApp) map[string]string {
	return map[string]string{"app.kubernetes.io/name": app.Name}
}

// setLabels adds the app's labels and keeps any others (someone else's).
func setLabels(object *metav1.ObjectMeta, app *SelfHealingApp) {
	if object.Labels == nil {
		object.Labels = map[string]string{}
	}
	maps.Copy(object.Labels, selector(app))
	object.Labels["app.kubernetes.io/managed-by"] = "selfhealingapp-operator"
}

// register records the app and its image in the shared registry ConfigMap.
func (r *Reconciler) register(ctx context.Context, app *SelfHealingApp) error {
	entries := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: registry, Namespace: app.Namespace}}
	_, err := controllerutil.CreateOrUpdate(ctx, r.Client, entries, func() error {
		if entries.Data == nil {
			entries.Data = map[string]string{}
		}
		entries.Data[app.Name] = app.Spec.Image
		return nil
	})
	return err
}

// finalize is the finalizer's work: remove the app's registry entry, then let the app go.
func (r *Reconciler) finalize(ctx context.Context, app *SelfHealingApp) error {
	if !controllerutil.ContainsFinalizer(app, finalizer) {
		return nil
	}
	// Read live: a cached copy may not show an entry added a moment ago, which would then outlive
	// its app. Update fails on a conflict (resourceVersion), and the deletion is retried.
	entries := &corev1.ConfigMap{}
	err := r.Live.Get(ctx, types.NamespacedName{Namespace: app.Namespace, Name: registry}, entries)
	if client.IgnoreNotFound(err) != nil {
		return err
	}
	if _, listed := entries.Data[app.Name]; listed {
		delete(entries.Data, app.Name)
		if err := r.Update(ctx, entries); err != nil {
			return err
		}
	}
	patch := client.MergeFromWithOptions(app.DeepCopy(), client.MergeFromWithOptimisticLock{})
	controllerutil.RemoveFinalizer(app, finalizer)
	return r.Patch(ctx, app, patch)
}

// progress is the status of an app whose children match its spec.
func progress(app *SelfHealingApp, deployment *appsv1.Deployment) []metav1.Condition {
	wanted := app.Spec.ReplicasOrDefault()
	available, updated := deployment.Status.AvailableReplicas, deployment.Status.UpdatedReplicas
	// Ready only once the Deployment controller has seen the Deployment's current spec and every
	// replica runs it: right after a spec change, the old replicas' availability says nothing.
	ready := deployment.Status.ObservedGeneration >= deployment.Generation && available >= wanted && updated >= wanted
	replicas := fmt.Sprintf("%d/%d replicas available, %d updated", available, wanted, updated)
	if ready {
		return []metav1.Condition{
			condition("Ready", true, "Available", replicas),
			condition("Progressing", false, "Complete", replicas),
			condition("Degraded", false, "AsExpected", "the app's objects match its spec"),
		}
	}
	return []metav1.Condition{
		condition("Ready", false, "RollingOut", replicas),
		condition("Progressing", true, "RollingOut", replicas),
		condition("Degraded", false, "AsExpected", "the app's objects match its spec"),
	}
}

// failed is the status of an app whose children could not be made to match its spec.
func failed(err error) []metav1.Condition {
	return []metav1.Condition{
		condition("Ready", false, "ReconcileFailed", err.Error()),
		condition("Progressing", false, "ReconcileFailed", err.Error()),
		condition("Degraded", true, "ReconcileFailed", err.Error()),
	}
}

func condition(kind string, isTrue bool, reason, message string) metav1.Condition {
	status := metav1.ConditionFalse
	if isTrue {
		status = metav1.ConditionTrue
	}
	return metav1.Condition{Type: kind, Status: status, Reason: reason, Message: message}
}

// writeStatus records the conditions and the observed generation, through the status
// subresource, and only if that changes the status: a pass that finds nothing new writes nothing.
func (r *Reconciler) writeStatus(ctx context.Context, app *SelfHealingApp, conditions ...metav1.Condition) error {
	before := app.DeepCopy()
	app.Status.ObservedGeneration = app.Generation
	for _, c := range conditions {
		c.ObservedGeneration = app.Generation
		// lastTransitionTime changes only when the condition's status does.
		meta.SetStatusCondition(&app.Status.Conditions, c)
	}
	if equality.Semantic.DeepEqual(before.Status, app.Status) {
		return nil
	}
	return r.Status().Patch(ctx, app, client.MergeFrom(before))
}
