# A least-privilege identity for lab workloads: it may manage the common workload objects in the
# `labs` namespace and read pods' logs and events there, and nothing else (no Secrets, no RBAC,
# no cluster-scoped objects, no other namespace).

resource "kubernetes_service_account" "lab_runner" {
  metadata {
    name      = "lab-runner"
    namespace = kubernetes_namespace.platform["labs"].metadata[0].name
    labels    = { "app.kubernetes.io/part-of" = "opslab" }
  }
  automount_service_account_token = false
}

resource "kubernetes_role" "lab_runner" {
  metadata {
    name      = "lab-runner"
    namespace = kubernetes_namespace.platform["labs"].metadata[0].name
    labels    = { "app.kubernetes.io/part-of" = "opslab" }
  }

  rule {
    api_groups = [""]
    resources  = ["pods", "services", "configmaps", "events"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }
  rule {
    api_groups = [""]
    resources  = ["pods/log"]
    verbs      = ["get"]
  }
  rule {
    api_groups = ["apps"]
    resources  = ["deployments", "replicasets", "statefulsets"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }
  rule {
    api_groups = ["apps"]
    resources  = ["deployments/scale"]
    verbs      = ["get", "update", "patch"]
  }
  rule {
    api_groups = ["policy"]
    resources  = ["poddisruptionbudgets"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }
}

resource "kubernetes_role_binding" "lab_runner" {
  metadata {
    name      = "lab-runner"
    namespace = kubernetes_namespace.platform["labs"].metadata[0].name
    labels    = { "app.kubernetes.io/part-of" = "opslab" }
  }
  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Role"
    name      = kubernetes_role.lab_runner.metadata[0].name
  }
  subject {
    kind      = "ServiceAccount"
    name      = kubernetes_service_account.lab_runner.metadata[0].name
    namespace = kubernetes_namespace.platform["labs"].metadata[0].name
  }
}
