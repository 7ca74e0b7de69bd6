package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/log"
	"sigs.k8s.io/controller-runtime/pkg/predicate"
)

// GitRepositoryReconciler fetches a branch, tag or commit over HTTP(S) with go-git and keeps the
// checkout under DataDir/gitrepository/<namespace>/<name>/<commit> as the object's artifact.
type GitRepositoryReconciler struct {
	client.Client
	DataDir  string
	Recorder record.EventRecorder
}

func (r *GitRepositoryReconciler) SetupWithManager(mgr ctrl.Manager) error {
	return ctrl.NewControllerManagedBy(mgr).
		For(&sourcev1.GitRepository{}, builder.WithPredicates(predicate.Or(
			predicate.GenerationChangedPredicate{}, predicate.AnnotationChangedPredicate{}))).
		Complete(r)
}

func gitUnsupported(repo *sourcev1.GitRepository) string {
	spec := repo.Spec
	ref := spec.Reference
	return unsupported(map[string]bool{
		"spec.secretRef":          spec.SecretRef != nil,
		"spec.provider":           spec.Provider != "" && spec.Provider != "generic",
		"spec.serviceAccountName": spec.ServiceAccountName != "",
		"spec.verify":             spec.Verification != nil,
		"spec.proxySecretRef":     spec.ProxySecretRef != nil,
		"spec.ignore":             spec.Ignore != nil,
		"spec.recurseSubmodules":  spec.RecurseSubmodules,
		"spec.include":            len(spec.Include) > 0,
		"spec.sparseCheckout":     len(spec.SparseCheckout) > 0,
		"spec.ref.semver":         ref != nil && ref.SemVer != "",
		"spec.ref.name":           ref != nil && ref.Name != "",
	})
}

func (r *GitRepositoryReconciler) Reconcile(ctx context.Context, req ctrl.Request) (ctrl.Result, error) {
	logger := log.FromContext(ctx)
	var repo sourcev1.GitRepository
	if err := r.Get(ctx, req.NamespacedName, &repo); err != nil {
		if apierrors.IsNotFound(err) {
			return ctrl.Result{}, os.RemoveAll(r.storage(req.Namespace, req.Name))
		}
		return ctrl.Result{}, err
	}
	if !repo.DeletionTimestamp.IsZero() || repo.Spec.Suspend {
		return ctrl.Result{}, nil
	}
	before := repo.DeepCopy()
	repo.Status.ObservedGeneration = repo.Generation
	if why := gitUnsupported(&repo); why != "" {
		stalled(&repo, UnsupportedFieldReason, why)
		r.Recorder.Event(&repo, corev1.EventTypeWarning, UnsupportedFieldReason, why)
		return ctrl.Result{}, r.Status().Patch(ctx, &repo, client.MergeFrom(before))
	}
	revision, err := r.fetch(ctx, &repo)
	if err != nil {
		failed(&repo, sourcev1.GitOperationFailedReason, err.Error())
		r.Recorder.Event(&repo, corev1.EventTypeWarning, sourcev1.GitOperationFailedReason, err.Error())
		if patchErr := r.Status().Patch(ctx, &repo, client.MergeFrom(before)); patchErr != nil {
			return ctrl.Result{}, patchErr
		}
		return ctrl.Result{RequeueAfter: retry(repo.Spec.Interval.Duration)}, nil
	}
	message := fmt.Sprintf("stored artifact for revision '%s'", revision)
	if repo.Status.Artifact == nil || repo.Status.Artifact.Revision != revision {
		logger.Info(message)
		r.Recorder.Event(&repo, corev1.EventTypeNormal, "NewArtifact", message)
	}
	ready(&repo, meta.SucceededReason, message)
	if err := r.Status().Patch(ctx, &repo, client.MergeFrom(before)); err != nil {
		return ctrl.Result{}, err
	}
	return ctrl.Result{RequeueAfter: repo.Spec.Interval.Duration}, nil
}

func (r *GitRepositoryReconciler) storage(namespace, name string) string {
	return filepath.Join(r.DataDir, "gitrepository", namespace, name)
}

// fetch clones the reference into a fresh directory (kept when its commit is new) and sets the
// artifact; it returns the Flux-format revision "<ref>@sha1:<commit>".
func (r *GitRepositoryReconciler) fetch(ctx context.Context, repo *sourcev1.GitRepository) (string, error) {
	timeout := 60 * time.Second
	if repo.Spec.Timeout != nil {
		timeout = repo.Spec.Timeout.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ref := repo.Spec.Reference
	options := &git.CloneOptions{URL: repo.Spec.URL, SingleBranch: true, Depth: 1, Tags: git.NoTags}
	label := "master"
	switch {
	case ref != nil && ref.Commit != "":
		options.Depth = 0
		if ref.Branch != "" {
			options.ReferenceName = plumbing.NewBranchReferenceName(ref.Branch)
			label = ref.Branch
		} else {
			options.SingleBranch = false
			label = "HEAD"
		}
	case ref != nil && ref.Tag != "":
		options.ReferenceName = plumbing.NewTagReferenceName(ref.Tag)
		label = ref.Tag
	case ref != nil && ref.Branch != "":
		options.ReferenceName = plumbing.NewBranchReferenceName(ref.Branch)
		label = ref.Branch
	}
	base := r.storage(repo.Namespace, repo.Name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	tmp, err := os.MkdirTemp(base, ".fetch-")
	if err != nil {
		return "", err
	}
	defer os.RemoveAll(tmp)
	cloned, err := git.PlainCloneContext(ctx, tmp, false, options)
	if err != nil {
		return "", fmt.Errorf("failed to checkout and determine revision: unable to clone '%s': %w", repo.Spec.URL, err)
	}
	head, err := cloned.Head()
	if err != nil {
		return "", err
	}
	commit := head.Hash()
	if ref != nil && ref.Commit != "" {
		commit = plumbing.NewHash(ref.Commit)
		tree, err := cloned.Worktree()
		if err != nil {
			return "", err
		}
		if err := tree.Checkout(&git.CheckoutOptions{Hash: commit}); err != nil {
			return "", fmt.Errorf("commit '%s' not found in '%s': %w", ref.Commit, label, err)
		}
	}
	revision := fmt.Sprintf("%s@sha1:%s", label, commit.String())
	keep := filepath.Join(base, commit.String())
	if _, err := os.Stat(keep); os.IsNotExist(err) {
		if err := os.RemoveAll(filepath.Join(tmp, ".git")); err != nil {
			return "", err
		}
		if err := os.Rename(tmp, keep); err != nil {
			return "", err
		}
	}
	r.prune(base, commit.String())
	digest, size, err := treeDigest(keep)
	if err != nil {
		return "", err
	}
	if repo.Status.Artifact != nil && repo.Status.Artifact.Digest == digest {
		repo.Status.Artifact.Revision = revision
		return revision, nil
	}
	repo.Status.Artifact = &meta.Artifact{
		Path:           filepath.Join("gitrepository", repo.Namespace, repo.Name, commit.String()),
		URL:            "file://" + keep,
		Revision:       revision,
		Digest:         digest,
		Size:           &size,
		LastUpdateTime: metav1.Now(),
	}
	return revision, nil
}

// treeDigest is a sha256 over the checkout's files (path, mode and content, in path order) and
// their total size: Flux digests its artifact tarball; a checkout directory is the artifact here.
func treeDigest(root string) (string, int64, error) {
	hash := sha256.New()
	var size int64
	err := filepath.WalkDir(root, func(path string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() {
			return err
		}
		info, err := entry.Info()
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		fmt.Fprintf(hash, "%s\x00%o\x00%d\x00", filepath.ToSlash(rel), info.Mode().Perm(), info.Size())
		file, err := os.Open(path)
		if err != nil {
			return err
		}
		defer file.Close()
		n, err := io.Copy(hash, file)
		size += n
		return err
	})
	return "sha256:" + hex.EncodeToString(hash.Sum(nil)), size, err
}

// prune removes older checkouts; a Kustomization mid-build on one keeps its own copy.
func (r *GitRepositoryReconciler) prune(base, keep string) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, entry := range entries {
		if entry.Name() != keep && entry.Name()[0] != '.' {
			_ = os.RemoveAll(filepath.Join(base, entry.Name()))
		}
	}
}

// retry is how soon a failed fetch or apply is tried again: the interval, at most a minute.
func retry(interval time.Duration) time.Duration {
	if interval <= 0 || interval > time.Minute {
		return time.Minute
	}
	return interval
}
