package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fluxcd/pkg/apis/meta"
	sourcev1 "github.com/fluxcd/source-controller/api/v1"
	"github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/storage/memory"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/record"
	ctrl "sigs.k8s.io/controller-runtime"
	"sigs.k8s.io/controller-runtime/pkg/builder"
	"sigs.k8s.io/controller-runtime/pkg/client"
	"sigs.k8s.io/controller-runtime/pkg/controller"
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
		WithOptions(controller.Options{MaxConcurrentReconciles: workers}).
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
		"spec.url other than http:// or https:// (ssh and file are not served)": !strings.HasPrefix(spec.URL, "http://") &&
			!strings.HasPrefix(spec.URL, "https://"),
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
	if requestedAt, ok := meta.ReconcileAnnotationValue(repo.GetAnnotations()); ok {
		repo.Status.LastHandledReconcileAt = requestedAt
	}
	if why := gitUnsupported(&repo); why != "" {
		stalled(&repo, UnsupportedFieldReason, why)
		r.Recorder.Event(&repo, corev1.EventTypeWarning, UnsupportedFieldReason, why)
		return ctrl.Result{}, r.Status().Patch(ctx, &repo, client.MergeFrom(before))
	}
	revision, err := r.fetch(ctx, &repo)
	if err != nil {
		message := redact(err.Error(), repo.Spec.URL)
		failed(&repo, sourcev1.GitOperationFailedReason, message)
		r.Recorder.Event(&repo, corev1.EventTypeWarning, sourcev1.GitOperationFailedReason, message)
		if patchErr := r.Status().Patch(ctx, &repo, client.MergeFrom(before)); patchErr != nil {
			return ctrl.Result{}, patchErr
		}
		return ctrl.Result{RequeueAfter: retry(repo.Spec.Interval.Duration)}, nil
	}
	message := fmt.Sprintf("stored artifact for revision '%s'", revision)
	if before.Status.Artifact == nil || before.Status.Artifact.Revision != revision {
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

// redact drops the user and password of an http(s) URL from a message.
func redact(message, raw string) string {
	parsed, err := url.Parse(raw)
	if err != nil || parsed.User == nil {
		return message
	}
	parsed.User = nil
	return strings.ReplaceAll(message, raw, parsed.String())
}

// wanted is the reference to fetch and its label in revisions: Flux's default is branch master.
func wanted(ref *sourcev1.GitRepositoryRef) (plumbing.ReferenceName, string) {
	switch {
	case ref != nil && ref.Commit != "" && ref.Branch == "":
		return plumbing.HEAD, "HEAD"
	case ref != nil && ref.Commit == "" && ref.Tag != "":
		return plumbing.NewTagReferenceName(ref.Tag), ref.Tag
	case ref != nil && ref.Branch != "":
		return plumbing.NewBranchReferenceName(ref.Branch), ref.Branch
	}
	return plumbing.NewBranchReferenceName("master"), "master"
}

// remoteCommit asks the server which commit the reference names now (git ls-remote), so an
// unchanged source costs one request instead of a clone. A pinned commit is its own answer.
func remoteCommit(ctx context.Context, url string, ref *sourcev1.GitRepositoryRef, name plumbing.ReferenceName) (string, error) {
	if ref != nil && ref.Commit != "" {
		return ref.Commit, nil
	}
	remote := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{url}})
	refs, err := remote.ListContext(ctx, &git.ListOptions{PeelingOption: git.AppendPeeled})
	if err != nil {
		return "", fmt.Errorf("unable to list references of '%s': %w", url, err)
	}
	found := ""
	for _, listed := range refs {
		switch listed.Name() {
		case name + "^{}": // an annotated tag, peeled to its commit
			return listed.Hash().String(), nil
		case name:
			found = listed.Hash().String()
		}
	}
	if found == "" {
		return "", fmt.Errorf("reference '%s' not found in '%s'", name.Short(), url)
	}
	return found, nil
}

// fetch keeps the reference's commit checked out under DataDir/gitrepository/ns/name/<commit> (a
// clone only when the commit is new) and sets the artifact; it returns the Flux-format revision
// "<ref>@sha1:<commit>". The previous commit's checkout is kept one more round, so a
// Kustomization that read the old artifact can still copy it.
func (r *GitRepositoryReconciler) fetch(ctx context.Context, repo *sourcev1.GitRepository) (string, error) {
	timeout := 60 * time.Second
	if repo.Spec.Timeout != nil {
		timeout = repo.Spec.Timeout.Duration
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ref := repo.Spec.Reference
	name, label := wanted(ref)
	base := r.storage(repo.Namespace, repo.Name)
	if err := os.MkdirAll(base, 0o755); err != nil {
		return "", err
	}
	commit, err := remoteCommit(ctx, repo.Spec.URL, ref, name)
	if err != nil {
		return "", err
	}
	keep := filepath.Join(base, commit)
	if _, err := os.Stat(keep); os.IsNotExist(err) {
		if commit, err = r.clone(ctx, repo, base, name, label); err != nil {
			return "", err
		}
		keep = filepath.Join(base, commit)
	}
	previous := ""
	if artifact := repo.Status.Artifact; artifact != nil {
		previous = filepath.Base(artifact.Path)
	}
	r.prune(base, commit, previous)
	revision := fmt.Sprintf("%s@sha1:%s", label, commit)
	digest, size, err := treeDigest(keep)
	if err != nil {
		return "", err
	}
	updated := metav1.Now()
	if artifact := repo.Status.Artifact; artifact != nil && artifact.Digest == digest {
		updated = artifact.LastUpdateTime
	}
	repo.Status.Artifact = &meta.Artifact{
		Path:           filepath.Join("gitrepository", repo.Namespace, repo.Name, commit),
		URL:            "file://" + keep,
		Revision:       revision,
		Digest:         digest,
		Size:           &size,
		LastUpdateTime: updated,
	}
	return revision, nil
}

// clone checks the reference out into base/<commit> (without .git) and returns the commit.
func (r *GitRepositoryReconciler) clone(ctx context.Context, repo *sourcev1.GitRepository, base string,
	name plumbing.ReferenceName, label string) (string, error) {
	ref := repo.Spec.Reference
	options := &git.CloneOptions{URL: repo.Spec.URL, SingleBranch: true, Depth: 1, Tags: git.NoTags, ReferenceName: name}
	if ref != nil && ref.Commit != "" {
		options.Depth = 0
		if name == plumbing.HEAD {
			options.SingleBranch = false
			options.ReferenceName = ""
		}
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
	if err := os.RemoveAll(filepath.Join(tmp, ".git")); err != nil {
		return "", err
	}
	keep := filepath.Join(base, commit.String())
	if err := os.Rename(tmp, keep); err != nil && !os.IsExist(err) {
		if _, statErr := os.Stat(keep); statErr != nil {
			return "", err
		}
	}
	return commit.String(), nil
}

// treeDigest is a sha256 over the checkout's files (path, mode and content, in path order) and
// symbolic links (path and target), with the files' total size: Flux digests its artifact
// tarball; a checkout directory is the artifact here.
func treeDigest(root string) (string, int64, error) {
	hash := sha256.New()
	var size int64
	err := filepath.WalkDir(root, func(path string, entry fs.DirEntry, err error) error {
		if err != nil || entry.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(root, path)
		rel = filepath.ToSlash(rel)
		if entry.Type()&fs.ModeSymlink != 0 {
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			fmt.Fprintf(hash, "%s\x00link\x00%s\x00", rel, target)
			return nil
		}
		if !entry.Type().IsRegular() {
			return nil
		}
		info, err := entry.Info()
		if err != nil {
			return err
		}
		fmt.Fprintf(hash, "%s\x00%o\x00%d\x00", rel, info.Mode().Perm(), info.Size())
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

// prune removes checkouts other than the current and the previous commit's.
func (r *GitRepositoryReconciler) prune(base string, keep ...string) {
	entries, err := os.ReadDir(base)
	if err != nil {
		return
	}
	for _, entry := range entries {
		if entry.Name()[0] != '.' && !slices.Contains(keep, entry.Name()) {
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
