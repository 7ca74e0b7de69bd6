package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/fluxcd/pkg/ssa/utils"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/controller-runtime/pkg/client"
)

// installCRDs applies every CustomResourceDefinition in dir (server-side, as opslab-gitops) and
// waits until each is Established, so the manager starts with its kinds served. Flux's own CRDs
// are applied unchanged: the API server then validates GitRepository and Kustomization objects
// against Flux's schemas.
func installCRDs(ctx context.Context, cfg *rest.Config, dir string) error {
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		return fmt.Errorf("no CRDs in %s (run `opslab setup --only gitops`)", dir)
	}
	kube, err := client.New(cfg, client.Options{})
	if err != nil {
		return err
	}
	for _, file := range files {
		handle, err := os.Open(file)
		if err != nil {
			return err
		}
		objects, err := utils.ReadObjects(handle)
		handle.Close()
		if err != nil {
			return fmt.Errorf("%s: %w", file, err)
		}
		for _, crd := range objects {
			crd.SetManagedFields(nil)
			if err := kube.Patch(ctx, crd, client.Apply, client.FieldOwner("opslab-gitops"), client.ForceOwnership); err != nil {
				return fmt.Errorf("applying %s: %w", crd.GetName(), err)
			}
			if err := waitEstablished(ctx, kube, crd.GetName()); err != nil {
				return err
			}
		}
	}
	return nil
}

func waitEstablished(ctx context.Context, kube client.Client, name string) error {
	return wait.PollUntilContextTimeout(ctx, 250*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		crd := &unstructured.Unstructured{}
		crd.SetGroupVersionKind(schema.GroupVersionKind{Group: "apiextensions.k8s.io", Version: "v1", Kind: "CustomResourceDefinition"})
		if err := kube.Get(ctx, client.ObjectKey{Name: name}, crd); err != nil {
			return false, nil
		}
		conditions, _, _ := unstructured.NestedSlice(crd.Object, "status", "conditions")
		for _, c := range conditions {
			condition, ok := c.(map[string]interface{})
			if ok && condition["type"] == "Established" && condition["status"] == "True" {
				return true, nil
			}
		}
		return false, nil
	})
}
