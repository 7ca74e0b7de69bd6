package main

import (
	"sort"
	"strings"

	"github.com/fluxcd/pkg/apis/meta"
	apimeta "k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// UnsupportedFieldReason is the Ready=False reason when an object sets a field this reconciler
// does not honour (real Flux would); the message names the fields.
const UnsupportedFieldReason = "UnsupportedField"

// conditioned is what both kinds share: Flux's conditions and the generation they describe.
type conditioned interface {
	meta.ObjectWithConditions
	meta.ObjectWithConditionsSetter
	GetGeneration() int64
}

func set(obj conditioned, kind string, status metav1.ConditionStatus, reason, message string) {
	conditions := obj.GetConditions()
	apimeta.SetStatusCondition(&conditions, metav1.Condition{
		Type: kind, Status: status, Reason: reason, Message: message, ObservedGeneration: obj.GetGeneration(),
	})
	obj.SetConditions(conditions)
}

func clear(obj conditioned, kind string) {
	conditions := obj.GetConditions()
	apimeta.RemoveStatusCondition(&conditions, kind)
	obj.SetConditions(conditions)
}

// progressing marks a reconciliation under way: Reconciling=True, Ready=Unknown.
func progressing(obj conditioned, message string) {
	set(obj, meta.ReconcilingCondition, metav1.ConditionTrue, meta.ProgressingReason, message)
	set(obj, meta.ReadyCondition, metav1.ConditionUnknown, meta.ProgressingReason, message)
}

// ready marks success: Ready=True, no Reconciling or Stalled.
func ready(obj conditioned, reason, message string) {
	set(obj, meta.ReadyCondition, metav1.ConditionTrue, reason, message)
	clear(obj, meta.ReconcilingCondition)
	clear(obj, meta.StalledCondition)
}

// failed marks a failure that a retry may mend: Ready=False, Reconciling stays until the retry.
func failed(obj conditioned, reason, message string) {
	set(obj, meta.ReadyCondition, metav1.ConditionFalse, reason, message)
	clear(obj, meta.StalledCondition)
}

// stalled marks a failure no retry mends until the object changes: Ready=False and Stalled=True.
func stalled(obj conditioned, reason, message string) {
	set(obj, meta.ReadyCondition, metav1.ConditionFalse, reason, message)
	set(obj, meta.StalledCondition, metav1.ConditionTrue, reason, message)
	clear(obj, meta.ReconcilingCondition)
}

// unsupported lists the named fields that are set, for an UnsupportedField condition.
func unsupported(fields map[string]bool) string {
	var named []string
	for name, isSet := range fields {
		if isSet {
			named = append(named, name)
		}
	}
	if len(named) == 0 {
		return ""
	}
	sort.Strings(named)
	return "opslab's reconciler does not honour " + strings.Join(named, ", ") +
		" (see docs/gitops.md for the fields it does; real Flux in the kind profile honours them all)"
}
