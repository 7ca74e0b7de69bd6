package main

// The SelfHealingApp API (crd.yaml) as Go types, so the reconciler works with fields rather than
// maps. A kubebuilder project would generate the DeepCopy methods with controller-gen; they are
// written by hand here so that the lab needs no code generator.

import (
	"slices"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"sigs.k8s.io/controller-runtime/pkg/scheme"
)

var (
	GroupVersion = schema.GroupVersion{Group: "labs.opslab.dev", Version: "v1alpha1"}

	// SchemeBuilder maps the Go types to their kind, which the client needs to find their API
	// and SetControllerReference needs to name the owner.
	SchemeBuilder = &scheme.Builder{GroupVersion: GroupVersion}
)

func init() {
	SchemeBuilder.Register(&SelfHealingApp{}, &SelfHealingAppList{})
}

// SelfHealingAppSpec is what the app asks for. The schema in crd.yaml validates it and fills in
// the defaults; spec.slo is part of the API but nothing here acts on it, so it has no field (the
// decoder skips it, and the operator never writes spec back).
type SelfHealingAppSpec struct {
	Image            string            `json:"image"`
	Replicas         *int32            `json:"replicas,omitempty"`
	Port             *int32            `json:"port,omitempty"`
	DisruptionBudget *DisruptionBudget `json:"disruptionBudget,omitempty"`
}

type DisruptionBudget struct {
	MinAvailable *int32 `json:"minAvailable,omitempty"`
}

// SelfHealingAppStatus is what the operator last saw.
type SelfHealingAppStatus struct {
	ObservedGeneration int64              `json:"observedGeneration,omitempty"`
	Conditions         []metav1.Condition `json:"conditions,omitempty"`
}

type SelfHealingApp struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata,omitempty"`

	Spec   SelfHealingAppSpec   `json:"spec,omitempty"`
	Status SelfHealingAppStatus `json:"status,omitempty"`
}

type SelfHealingAppList struct {
	metav1.TypeMeta `json:",inline"`
	metav1.ListMeta `json:"metadata,omitempty"`

	Items []SelfHealingApp `json:"items"`
}

// The defaults repeat the schema's, for a CRD that does not declare them.

func (s *SelfHealingAppSpec) ReplicasOrDefault() int32 { return valueOr(s.Replicas, 2) }

func (s *SelfHealingAppSpec) PortOrDefault() int32 { return valueOr(s.Port, 8080) }

// MinAvailableOrDefault lets one pod at a time be disrupted unless the spec says otherwise.
func (s *SelfHealingAppSpec) MinAvailableOrDefault() int32 {
	if s.DisruptionBudget != nil && s.DisruptionBudget.MinAvailable != nil {
		return *s.DisruptionBudget.MinAvailable
	}
	return max(s.ReplicasOrDefault()-1, 0)
}

func valueOr(p *int32, fallback int32) int32 {
	if p == nil {
		return fallback
	}
	return *p
}

// Deep copies: the cache hands out copies of what it holds, so nothing a reconcile changes leaks
// into the cache or into another reconcile.

func (in *SelfHealingApp) DeepCopyInto(out *SelfHealingApp) {
	*out = *in
	in.ObjectMeta.DeepCopyInto(&out.ObjectMeta)
	out.Spec.Replicas = copyOf(in.Spec.Replicas)
	out.Spec.Port = copyOf(in.Spec.Port)
	if in.Spec.DisruptionBudget != nil {
		out.Spec.DisruptionBudget = &DisruptionBudget{MinAvailable: copyOf(in.Spec.DisruptionBudget.MinAvailable)}
	}
	out.Status.Conditions = slices.Clone(in.Status.Conditions) // a Condition holds only values
}

func (in *SelfHealingApp) DeepCopy() *SelfHealingApp {
	out := new(SelfHealingApp)
	in.DeepCopyInto(out)
	return out
}

func (in *SelfHealingApp) DeepCopyObject() runtime.Object { return in.DeepCopy() }

func (in *SelfHealingAppList) DeepCopyObject() runtime.Object {
	out := new(SelfHealingAppList)
	*out = *in
	in.ListMeta.DeepCopyInto(&out.ListMeta)
	out.Items = make([]SelfHealingApp, len(in.Items))
	for i := range in.Items {
		in.Items[i].DeepCopyInto(&out.Items[i])
	}
	return out
}

func copyOf[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
