package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fluxcd/cli-utils/pkg/kstatus/polling"
	"github.com/fluxcd/cli-utils/pkg/object"
	kustomizev1 "github.com/fluxcd/kustomize-controller/api/v1"
	"github.com/fluxcd/pkg/apis/meta"
	"github.com/fluxcd/pkg/kustomize"
	"github.com/fluxcd/pkg/ssa"
	"github.com/fluxcd/pkg/ssa/utils"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
	"sigs.k8s.io/controller-runtime/pkg/controller/controllerutil"
	"sigs.k8s.io/controller-runtime/pkg/event"
	"sigs.k8s.io/controller-runtime/pkg/handler"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
	"sigs.k8s.io/controller-runtime/pkg/reconcile"
)

const (
	finalizer  = "finalizers.fluxcd.io"
	fieldOwner = "kustomize-controller"
	sourceKey  = ".spec.sourceRef"
	// workers is how many objects of a kind reconcile at once (one object is never reconciled twice
	// at once): a Kustomization waiting on health does not hold the others back.
	workers = 4
)

// KustomizationReconciler builds a Kustomization's path from its GitRepository's checkout with
// fluxcd/pkg/kustomize, applies it with fluxcd/pkg/ssa, prunes what left Git, and waits for health.
type KustomizationReconciler struct {
	client.Client
	Mapper            apimeta.RESTMapper
	DataDir           string
	Recorder          record.EventRecorder
	DependencyRequeue time.Duration
	// Config is the reconciler's own connection; an object's serviceAccountName (or
	// DefaultServiceAccount) is impersonated from it for everything that touches applied objects.
	Config                *rest.Config
	DefaultServiceAccount string
	// NoCrossNamespaceRefs refuses a sourceRef or dependsOn in another namespace (Flux's lockdown).
	NoCrossNamespaceRefs bool
	// Reader reads service accounts and namespaces uncached: the reconciler needs only get on them.
	Reader client.Reader
}

func (r *KustomizationReconciler) SetupWithManager(mgr ctrl.Manager) error {
	if err := mgr.GetFieldIndexer().IndexField(context.Background(), &kustomizev1.Kustomization{}, sourceKey,
		func(o client.Object) []string {
			ks := o.(*kustomizev1.Kustomization)
			namespace := ks.Spec.SourceRef.Namespace
			if namespace == "" {
				namespace = ks.Namespace
			}
			return []string{namespace + "/" + ks.Spec.SourceRef.Name}
		}); err != nil {
		return err
	}
	return ctrl.NewControllerManagedBy(mgr).
		For(&kustomizev1.Kustomization{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Watches(&sourcev1.GitRepository{}, handler.EnqueueRequestsFromMapFunc(r.forRevision),
			builder.WithPredicates(revisionChanged{})).
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
		Complete(r)
}

// revisionChanged passes GitRepository updates whose artifact revision changed.
type revisionChanged struct{ predicate.Funcs }

func (revisionChanged) Update(e event.UpdateEvent) bool {
	before, ok1 := e.ObjectOld.(*sourcev1.GitRepository)
	after, ok2 := e.ObjectNew.(*sourcev1.GitRepository)
	if !ok1 || !ok2 || after.Status.Artifact == nil {
		return false
	}
	return before.Status.Artifact == nil || before.Status.Artifact.Revision != after.Status.Artifact.Revision
}

func (r *KustomizationReconciler) forRevision(ctx context.Context, o client.Object) []reconcile.Request {
	var list kustomizev1.KustomizationList
	if err := r.List(ctx, &list, client.MatchingFields{sourceKey: o.GetNamespace() + "/" + o.GetName()}); err != nil {
		return nil
	}
	requests := make([]reconcile.Request, 0, len(list.Items))
	for _, ks := range list.Items {
		requests = append(requests, reconcile.Request{NamespacedName: types.NamespacedName{Namespace: ks.Namespace, Name: ks.Name}})
	}
	return requests
}

func kustomizationUnsupported(ks *kustomizev1.Kustomization) string {
	spec := ks.Spec
	readyExpr := false
	for _, dep := range spec.DependsOn {
		readyExpr = readyExpr || dep.ReadyExpr != ""
	}
	return unsupported(map[string]bool{
		"spec.decryption":                          spec.Decryption != nil,
		"spec.kubeConfig":                          spec.KubeConfig != nil,
		"spec.postBuild":                           spec.PostBuild != nil,
		"spec.healthCheckExprs":                    len(spec.HealthCheckExprs) > 0,
		"spec.ignore":                              len(spec.Ignore) > 0,
		"spec.deletionPolicy":                      spec.DeletionPolicy != "" && spec.DeletionPolicy != "MirrorPrune",
		"spec.dependsOn[].readyExpr":               readyExpr,
		"spec.sourceRef.kind (only GitRepository)": spec.SourceRef.Kind != sourcev1.GitRepositoryKind,
	})
}

func (r *KustomizationReconciler) Reconcile(ctx context.Context, req ctrl.Request) (result ctrl.Result, err error) {
	var ks kustomizev1.Kustomization
	if err := r.Get(ctx, req.NamespacedName, &ks); err != nil {
		return ctrl.Result{}, client.IgnoreNotFound(err)
	}
	if !ks.DeletionTimestamp.IsZero() {
		return ctrl.Result{}, r.finalize(ctx, &ks)
	}
	if !controllerutil.ContainsFinalizer(&ks, finalizer) {
		patch := client.MergeFrom(ks.DeepCopy())
		controllerutil.AddFinalizer(&ks, finalizer)
		if err := r.Patch(ctx, &ks, patch); err != nil {
			return ctrl.Result{}, err
		}
	}
	if ks.Spec.Suspend {
		return ctrl.Result{}, nil
	}
	before := ks.DeepCopy()
	if requestedAt, ok := meta.ReconcileAnnotationValue(ks.GetAnnotations()); ok {
		ks.Status.LastHandledReconcileAt = requestedAt
	}
	defer func() {
		ks.Status.ObservedGeneration = ks.Generation
		if patchErr := r.Status().Patch(ctx, &ks, client.MergeFrom(before)); patchErr != nil && err == nil {
			err = patchErr
		}
	}()
	if why := kustomizationUnsupported(&ks); why != "" {
		stalled(&ks, UnsupportedFieldReason, why)
		r.Recorder.Event(&ks, corev1.EventTypeWarning, UnsupportedFieldReason, why)
		return ctrl.Result{}, nil
	}
	if why := r.crossNamespace(&ks); why != "" {
		stalled(&ks, AccessDeniedReason, why)
		r.Recorder.Event(&ks, corev1.EventTypeWarning, AccessDeniedReason, why)
		return ctrl.Result{}, nil
	}
	artifact, err := r.source(ctx, &ks)
	if err != nil {
		failed(&ks, meta.ArtifactFailedReason, err.Error())
		return ctrl.Result{RequeueAfter: r.DependencyRequeue}, nil
	}
	if waiting := r.dependenciesNotReady(ctx, &ks, artifact.Revision); waiting != "" {
		failed(&ks, meta.DependencyNotReadyReason, waiting)
		return ctrl.Result{RequeueAfter: r.DependencyRequeue}, nil
	}
	ks.Status.LastAttemptedRevision = artifact.Revision
	progressing(&ks, fmt.Sprintf("Reconciliation in progress for revision '%s'", artifact.Revision))
	// Say so now: a health wait can take the whole timeout, and the status must not look settled.
	if err := r.Status().Patch(ctx, &ks, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, err
	}
	before = ks.DeepCopy()
	reason, applyErr := r.apply(ctx, &ks, artifact)
	if applyErr != nil {
		failed(&ks, reason, applyErr.Error())
		r.Recorder.Event(&ks, corev1.EventTypeWarning, reason, applyErr.Error())
		log.FromContext(ctx).Info("reconciliation failed", "reason", reason, "error", applyErr.Error())
		interval := ks.Spec.Interval.Duration
		if ks.Spec.RetryInterval != nil {
			interval = ks.Spec.RetryInterval.Duration
		}
		return ctrl.Result{RequeueAfter: retry(interval)}, nil
	}
	message := fmt.Sprintf("Applied revision: %s", artifact.Revision)
	if ks.Status.LastAppliedRevision != artifact.Revision {
		r.Recorder.Event(&ks, corev1.EventTypeNormal, meta.ReconciliationSucceededReason, message)
	}
	ks.Status.LastAppliedRevision = artifact.Revision
	ready(&ks, meta.ReconciliationSucceededReason, message)
	return ctrl.Result{RequeueAfter: ks.Spec.Interval.Duration}, nil
}

// dependenciesNotReady is "" when every dependsOn Kustomization is Ready at its latest generation
// and applied its latest attempted revision (the revision this one is about to apply, when both
// read the same source, as Flux requires), else what it waits for.
func (r *KustomizationReconciler) dependenciesNotReady(ctx context.Context, ks *kustomizev1.Kustomization, revision string) string {
	for _, dep := range ks.Spec.DependsOn {
		namespace := dep.Namespace
		if namespace == "" {
			namespace = ks.Namespace
		}
		var other kustomizev1.Kustomization
		name := namespace + "/" + dep.Name
		if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: dep.Name}, &other); err != nil {
			return fmt.Sprintf("dependency '%s' is not ready: %v", name, err)
		}
		isReady := apimeta.IsStatusConditionTrue(other.Status.Conditions, meta.ReadyCondition)
		current := other.Status.ObservedGeneration == other.Generation &&
			other.Status.LastAppliedRevision == other.Status.LastAttemptedRevision
		if !isReady || !current {
			return fmt.Sprintf("dependency '%s' is not ready", name)
		}
		if sameSource(ks, &other) && other.Status.LastAppliedRevision != revision {
			return fmt.Sprintf("dependency '%s' is not ready: it has not applied revision '%s' yet", name, revision)
		}
	}
	return ""
}

// AccessDeniedReason is Flux's reason when a reference crosses namespaces under the lockdown.
const AccessDeniedReason = "AccessDenied"

// crossNamespace is "" unless the lockdown is on and a reference leaves the object's namespace.
func (r *KustomizationReconciler) crossNamespace(ks *kustomizev1.Kustomization) string {
	if !r.NoCrossNamespaceRefs {
		return ""
	}
	refs := []string{ks.Spec.SourceRef.Namespace}
	for _, dep := range ks.Spec.DependsOn {
		refs = append(refs, dep.Namespace)
	}
	for _, namespace := range refs {
		if namespace != "" && namespace != ks.Namespace {
			return fmt.Sprintf("cross-namespace references are not allowed: '%s' refers to namespace '%s'", ks.Name, namespace)
		}
	}
	return ""
}

func sourceOf(ks *kustomizev1.Kustomization) string {
	namespace := ks.Spec.SourceRef.Namespace
	if namespace == "" {
		namespace = ks.Namespace
	}
	return ks.Spec.SourceRef.Kind + "/" + namespace + "/" + ks.Spec.SourceRef.Name
}

func sameSource(a, b *kustomizev1.Kustomization) bool { return sourceOf(a) == sourceOf(b) }

func (r *KustomizationReconciler) source(ctx context.Context, ks *kustomizev1.Kustomization) (*meta.Artifact, error) {
	namespace := ks.Spec.SourceRef.Namespace
	if namespace == "" {
		namespace = ks.Namespace
	}
	var repo sourcev1.GitRepository
	name := namespace + "/" + ks.Spec.SourceRef.Name
	if err := r.Get(ctx, types.NamespacedName{Namespace: namespace, Name: ks.Spec.SourceRef.Name}, &repo); err != nil {
		if apierrors.IsNotFound(err) {
			return nil, fmt.Errorf("Source '%s %s' not found", sourcev1.GitRepositoryKind, name)
		}
		return nil, err
	}
	if repo.Status.Artifact == nil {
		return nil, fmt.Errorf("Source artifact not found, retrying in %s", r.DependencyRequeue)
	}
	return repo.Status.Artifact, nil
}

// apply builds, applies, prunes and waits; on failure it returns the condition reason.
func (r *KustomizationReconciler) apply(ctx context.Context, ks *kustomizev1.Kustomization, artifact *meta.Artifact) (string, error) {
	objects, err := r.build(ks, artifact)
	if err != nil {
		return meta.BuildFailedReason, err
	}
	manager, err := r.manager(ks)
	if err != nil {
		return meta.ReconciliationFailedReason, err
	}
	manager.SetOwnerLabels(objects, ks.Name, ks.Namespace)
	if ks.Spec.CommonMetadata != nil {
		utils.SetCommonMetadata(objects, ks.Spec.CommonMetadata.Labels, ks.Spec.CommonMetadata.Annotations)
	}
	changes, err := manager.ApplyAllStaged(ctx, objects, applyOptions(ks.Spec.Force))
	if err != nil {
		return meta.ReconciliationFailedReason, err
	}
	previous := ks.Status.Inventory
	ks.Status.Inventory = inventoryOf(changes)
	if ks.Spec.Prune && previous != nil {
		stale, err := staleObjects(previous, ks.Status.Inventory)
		if err != nil {
			return meta.PruneFailedReason, err
		}
		if _, err := manager.DeleteAll(ctx, stale, deleteOptions(manager, ks)); err != nil {
			return meta.PruneFailedReason, fmt.Errorf("prune failed: %w", err)
		}
	}
	toCheck := object.ObjMetadataSet{}
	if ks.Spec.Wait {
		self := object.ObjMetadata{Namespace: ks.Namespace, Name: ks.Name, GroupKind: kustomizev1.GroupVersion.WithKind(kustomizev1.KustomizationKind).GroupKind()}
		for _, applied := range changes.ToObjMetadataSet() {
			if applied != self {
				toCheck = append(toCheck, applied)
			}
		}
	}
	for _, check := range ks.Spec.HealthChecks {
		gv, err := schema.ParseGroupVersion(check.APIVersion)
		if err != nil {
			return meta.HealthCheckFailedReason, err
		}
		toCheck = append(toCheck, object.ObjMetadata{Namespace: check.Namespace, Name: check.Name,
			GroupKind: schema.GroupKind{Group: gv.Group, Kind: check.Kind}})
	}
	if len(toCheck) > 0 {
		timeout := ks.Spec.Interval.Duration
		if ks.Spec.Timeout != nil {
			timeout = ks.Spec.Timeout.Duration
		}
		set(ks, meta.HealthyCondition, metav1.ConditionUnknown, meta.ProgressingReason, "Health check in progress")
		waiting, stop := r.untilSuperseded(ctx, ks, artifact.Revision)
		err := manager.WaitForSetWithContext(waiting, toCheck, ssa.WaitOptions{Interval: 2 * time.Second, Timeout: timeout, FailFast: true})
		stop()
		if cause := context.Cause(waiting); errors.Is(cause, errNewRevision) || errors.Is(cause, errDeleting) {
			message := "Health check canceled: " + cause.Error()
			set(ks, meta.HealthyCondition, metav1.ConditionUnknown, meta.HealthCheckCanceledReason, message)
			return meta.HealthCheckCanceledReason, errors.New(message)
		}
		if err != nil {
			message := "Health check failed after " + timeout.String() + ": " + err.Error()
			set(ks, meta.HealthyCondition, metav1.ConditionFalse, meta.HealthCheckFailedReason, message)
			return meta.HealthCheckFailedReason, errors.New(message)
		}
		set(ks, meta.HealthyCondition, metav1.ConditionTrue, meta.SucceededReason, "Health check passed")
	} else {
		clear(ks, meta.HealthyCondition)
	}
	return "", nil
}

var (
	errNewRevision = errors.New("the source has a new revision, which is applied next")
	errDeleting    = errors.New("the Kustomization is being deleted")
)

// untilSuperseded is a context cancelled when the Kustomization's source stores another revision
// than “revision“ (a fix, or a revert, of what is being waited for): the health wait of a bad
// release then ends at once instead of at its timeout, as Flux's CancelHealthCheckOnNewRevision.
// It is cancelled as well when the Kustomization is being deleted (its namespace, say): a wait on
// objects that are going away would otherwise hold the finalizer for the whole timeout.
func (r *KustomizationReconciler) untilSuperseded(ctx context.Context, ks *kustomizev1.Kustomization, revision string) (context.Context, func()) {
	waiting, cancel := context.WithCancelCause(ctx)
	key := client.ObjectKeyFromObject(ks)
	done := make(chan struct{})
	go func() {
		ticker := time.NewTicker(time.Second)
		defer ticker.Stop()
		for {
			select {
			case <-done:
				return
			case <-ticker.C:
				var current kustomizev1.Kustomization
				if err := r.Get(waiting, key, &current); apierrors.IsNotFound(err) || (err == nil && !current.DeletionTimestamp.IsZero()) {
					cancel(errDeleting)
					return
				}
				if artifact, err := r.source(waiting, ks); err == nil && artifact.Revision != revision {
					cancel(errNewRevision)
					return
				}
			}
		}
	}()
	return waiting, func() { close(done); cancel(nil) }
}

// build runs kustomize on a private copy of the checkout (the generator writes a
// kustomization.yaml where the path has none, and applies the object's images, patches, prefix,
// suffix and target namespace).
func (r *KustomizationReconciler) build(ks *kustomizev1.Kustomization, artifact *meta.Artifact) ([]*unstructured.Unstructured, error) {
	work, err := os.MkdirTemp(r.DataDir, ".build-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(work)
	checkout := filepath.Join(r.DataDir, artifact.Path)
	if err := os.CopyFS(work, os.DirFS(checkout)); err != nil {
		return nil, fmt.Errorf("the checkout of '%s' is not in the reconciler's storage (%w): it is back once %s fetches it again (see its Ready condition)",
			artifact.Revision, err, ks.Spec.SourceRef.Name)
	}
	if digest, _, err := treeDigest(work); err != nil || digest != artifact.Digest {
		return nil, fmt.Errorf("the source's checkout of '%s' changed while it was copied: it is fetched again", artifact.Revision)
	}
	path := filepath.Clean(filepath.Join(work, ks.Spec.Path))
	if path != work && !strings.HasPrefix(path, work+string(filepath.Separator)) {
		return nil, fmt.Errorf("path '%s' leaves the source", ks.Spec.Path)
	}
	if _, err := os.Stat(path); err != nil {
		return nil, fmt.Errorf("kustomization path not found: %s", ks.Spec.Path)
	}
	raw, err := runtime.DefaultUnstructuredConverter.ToUnstructured(ks)
	if err != nil {
		return nil, err
	}
	if _, err := kustomize.NewGenerator(work, unstructured.Unstructured{Object: raw}).WriteFile(path); err != nil {
		return nil, err
	}
	built, err := kustomize.SecureBuild(work, path, false)
	if err != nil {
		return nil, err
	}
	manifests, err := built.AsYaml()
	if err != nil {
		return nil, err
	}
	return utils.ReadObjects(strings.NewReader(string(manifests)))
}

func inventoryOf(changes *ssa.ChangeSet) *kustomizev1.ResourceInventory {
	inventory := &kustomizev1.ResourceInventory{Entries: []kustomizev1.ResourceRef{}}
	for _, entry := range changes.Entries {
		inventory.Entries = append(inventory.Entries, kustomizev1.ResourceRef{
			ID: entry.ObjMetadata.String(), Version: entry.GroupVersion,
		})
	}
	sort.Slice(inventory.Entries, func(i, j int) bool { return inventory.Entries[i].ID < inventory.Entries[j].ID })
	return inventory
}

// staleObjects are in the old inventory and not the new one, as objects to delete.
func staleObjects(old, current *kustomizev1.ResourceInventory) ([]*unstructured.Unstructured, error) {
	kept := map[string]bool{}
	for _, entry := range current.Entries {
		kept[entry.ID] = true
	}
	var stale []*unstructured.Unstructured
	for _, entry := range old.Entries {
		if kept[entry.ID] {
			continue
		}
		id, err := object.ParseObjMetadata(entry.ID)
		if err != nil {
			return nil, fmt.Errorf("inventory entry %q: %w", entry.ID, err)
		}
		u := &unstructured.Unstructured{}
		u.SetGroupVersionKind(schema.GroupVersionKind{Group: id.GroupKind.Group, Version: versionOf(entry.Version), Kind: id.GroupKind.Kind})
		u.SetNamespace(id.Namespace)
		u.SetName(id.Name)
		stale = append(stale, u)
	}
	return stale, nil
}

// versionOf is an inventory entry's version: Flux records "v1" or "apps/v1"'s version part.
func versionOf(v string) string {
	if i := strings.LastIndex(v, "/"); i >= 0 {
		return v[i+1:]
	}
	return v
}

// manager is the apply, prune and health engine, acting as the object's service account when it
// names one (or the reconciler's default), as Flux does for multi-tenancy.
func (r *KustomizationReconciler) manager(ks *kustomizev1.Kustomization) (*ssa.ResourceManager, error) {
	cl := r.Client
	if account := r.account(ks); account != "" {
		config := rest.CopyConfig(r.Config)
		config.Impersonate = rest.ImpersonationConfig{UserName: "system:serviceaccount:" + ks.Namespace + ":" + account}
		impersonated, err := client.New(config, client.Options{Scheme: r.Scheme(), Mapper: r.Mapper})
		if err != nil {
			return nil, fmt.Errorf("cannot act as service account '%s': %w", account, err)
		}
		cl = impersonated
	}
	return ssa.NewResourceManager(cl, polling.NewStatusPoller(cl, r.Mapper, polling.Options{}),
		ssa.Owner{Field: fieldOwner, Group: kustomizev1.GroupVersion.Group}), nil
}

// account is the service account a Kustomization acts as ("" for the reconciler's own identity).
func (r *KustomizationReconciler) account(ks *kustomizev1.Kustomization) string {
	if ks.Spec.ServiceAccountName != "" {
		return ks.Spec.ServiceAccountName
	}
	return r.DefaultServiceAccount
}

// annotation is a kustomize.toolkit.fluxcd.io/<key> label or annotation key.
func annotation(key string) string { return kustomizev1.GroupVersion.Group + "/" + key }

// applyOptions are kustomize-controller's: objects marked reconcile: disabled or ssa: Ignore are
// left alone, ssa: IfNotPresent ones only created, force: enabled ones recreated on immutable
// changes, and kubectl's field managers are taken over so a hand edit is reverted.
func applyOptions(force bool) ssa.ApplyOptions {
	options := ssa.DefaultApplyOptions()
	options.Force = force
	options.ExclusionSelector = map[string]string{
		annotation("reconcile"): kustomizev1.DisabledValue,
		annotation("ssa"):       kustomizev1.IgnoreValue,
	}
	options.IfNotPresentSelector = map[string]string{annotation("ssa"): kustomizev1.IfNotPresentValue}
	options.ForceSelector = map[string]string{annotation("force"): kustomizev1.EnabledValue}
	options.Cleanup = ssa.ApplyCleanupOptions{
		Annotations: []string{corev1.LastAppliedConfigAnnotation},
		FieldManagers: []ssa.FieldManager{
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationApply},
			{Name: "kubectl", OperationType: metav1.ManagedFieldsOperationUpdate},
			{Name: "before-first-apply", OperationType: metav1.ManagedFieldsOperationUpdate},
		},
		Exclusions: map[string]string{annotation("ssa"): kustomizev1.MergeValue},
	}
	return options
}

// deleteOptions prune only objects that carry this Kustomization's owner labels and are not
// marked prune: disabled or reconcile: disabled.
func deleteOptions(manager *ssa.ResourceManager, ks *kustomizev1.Kustomization) ssa.DeleteOptions {
	return ssa.DeleteOptions{
		PropagationPolicy: metav1.DeletePropagationBackground,
		Inclusions:        manager.GetOwnerLabels(ks.Name, ks.Namespace),
		Exclusions: map[string]string{
			annotation("prune"):     kustomizev1.DisabledValue,
			annotation("reconcile"): kustomizev1.DisabledValue,
		},
	}
}

// finalize prunes what the Kustomization applied (when prune is on) and releases it. When the
// service account it acts as is gone, or the prune fails while its namespace is being deleted (the
// namespace's own deletion removes what is left), it is released with a warning instead of
// holding the namespace in Terminating.
func (r *KustomizationReconciler) finalize(ctx context.Context, ks *kustomizev1.Kustomization) error {
	if ks.Spec.Prune && !ks.Spec.Suspend && ks.Status.Inventory != nil {
		if err := r.pruneAll(ctx, ks); err != nil {
			if !r.namespaceTerminating(ctx, ks.Namespace) && !errors.Is(err, errAccountGone) {
				return err
			}
			r.Recorder.Event(ks, corev1.EventTypeWarning, meta.PruneFailedReason, "prune skipped on deletion: "+err.Error())
		}
	}
	patch := client.MergeFrom(ks.DeepCopy())
	controllerutil.RemoveFinalizer(ks, finalizer)
	return r.Patch(ctx, ks, patch)
}

var errAccountGone = errors.New("the service account to act as is gone")

func (r *KustomizationReconciler) pruneAll(ctx context.Context, ks *kustomizev1.Kustomization) error {
	if account := r.account(ks); account != "" {
		var sa corev1.ServiceAccount
		if err := r.Reader.Get(ctx, types.NamespacedName{Namespace: ks.Namespace, Name: account}, &sa); apierrors.IsNotFound(err) {
			return fmt.Errorf("%w: %s/%s", errAccountGone, ks.Namespace, account)
		}
	}
	stale, err := staleObjects(ks.Status.Inventory, &kustomizev1.ResourceInventory{})
	if err != nil {
		return err
	}
	manager, err := r.manager(ks)
	if err != nil {
		return err
	}
	_, err = manager.DeleteAll(ctx, stale, deleteOptions(manager, ks))
	return err
}

func (r *KustomizationReconciler) namespaceTerminating(ctx context.Context, name string) bool {
	var namespace corev1.Namespace
	err := r.Reader.Get(ctx, types.NamespacedName{Name: name}, &namespace)
	return err == nil && !namespace.DeletionTimestamp.IsZero()
}
