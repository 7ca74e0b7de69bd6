# A tenant: one team's namespace in one environment, with its guard rails and its app.

locals {
  namespace = "${var.team}-${var.environment}"
  labels = {
    "app.kubernetes.io/managed-by" = "terraform"
    "opslab.dev/team"              = var.team
    "opslab.dev/environment"       = var.environment
    "opslab.dev/owner"             = replace(var.owner, "@", ".at.")
  }
  app_labels = merge(local.labels, { "app.kubernetes.io/name" = var.app.name })
  selector   = { "app.kubernetes.io/name" = var.app.name, "opslab.dev/team" = var.team }
}

resource "kubernetes_namespace" "this" {
  metadata {
    name        = local.namespace
    labels      = local.labels
    annotations = { "opslab.dev/owner" = var.owner }
  }
}

resource "kubernetes_resource_quota" "this" {
  metadata {
    name      = "tenant-quota"
    namespace = kubernetes_namespace.this.metadata[0].name
    labels    = local.labels
  }
  spec {
    hard = {
      "requests.cpu"    = var.quota.requests_cpu
      "requests.memory" = var.quota.requests_memory
      "limits.cpu"      = var.quota.limits_cpu
      "limits.memory"   = var.quota.limits_memory
      "pods"            = tostring(var.quota.pods)
    }
  }
}

# Every container gets a request and a limit even when its spec names none, so the quota can count it.
resource "kubernetes_limit_range" "this" {
  metadata {
    name      = "tenant-defaults"
    namespace = kubernetes_namespace.this.metadata[0].name
    labels    = local.labels
  }
  spec {
    limit {
      type            = "Container"
      default_request = { cpu = "50m", memory = "64Mi" }
      default         = { cpu = "200m", memory = "256Mi" }
    }
  }
}

# The team's deployer: it manages the workloads in its own namespace, and nothing else.
resource "kubernetes_service_account" "deployer" {
  metadata {
    name      = "deployer"
    namespace = kubernetes_namespace.this.metadata[0].name
    labels    = local.labels
  }
  automount_service_account_token = false
}

resource "kubernetes_role" "deployer" {
  metadata {
    name      = "deployer"
    namespace = kubernetes_namespace.this.metadata[0].name
    labels    = local.labels
  }
  rule {
    api_groups = ["apps"]
    resources  = ["deployments", "replicasets"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }
  rule {
    api_groups = [""]
    resources  = ["pods", "services", "configmaps"]
    verbs      = ["get", "list", "watch", "create", "update", "patch", "delete"]
  }
  rule {
    api_groups = [""]
    resources  = ["pods/log", "events"]
    verbs      = ["get", "list", "watch"]
  }
}

resource "kubernetes_role_binding" "deployer" {
  metadata {
    name      = "deployer"
    namespace = kubernetes_namespace.this.metadata[0].name
    labels    = local.labels
  }
  role_ref {
    api_group = "rbac.authorization.k8s.io"
    kind      = "Role"
    name      = kubernetes_role.deployer.metadata[0].name
  }
  subject {
    kind      = "ServiceAccount"
    name      = kubernetes_service_account.deployer.metadata[0].name
    namespace = kubernetes_namespace.this.metadata[0].name
  }
}

# Default deny for ingress, then the app's port from its own namespace and the ones allowed.
resource "kubernetes_network_policy" "default_deny" {
  metadata {
    name      = "default-deny-ingress"
    namespace = kubernetes_namespace.this.metadata[0].name
    labels    = local.labels
  }
  spec {
    pod_selector {}
    policy_types = ["Ingress"]
  }
}

resource "kubernetes_network_policy" "app" {
  metadata {
    name      = "${var.app.name}-ingress"
    namespace = kubernetes_namespace.this.metadata[0].name
    labels    = local.labels
  }
  spec {
    pod_selector {
      match_labels = local.selector
    }
    policy_types = ["Ingress"]
    ingress {
      ports {
        port     = tostring(var.app.port)
        protocol = "TCP"
      }
      from {
        namespace_selector {
          match_labels = { "opslab.dev/team" = var.team, "opslab.dev/environment" = var.environment }
        }
      }
      dynamic "from" {
        for_each = toset(var.allowed_namespaces)
        content {
          namespace_selector {
            match_labels = { "kubernetes.io/metadata.name" = from.value }
          }
        }
      }
    }
  }
}

resource "kubernetes_deployment" "app" {
  metadata {
    name      = var.app.name
    namespace = kubernetes_namespace.this.metadata[0].name
    labels    = local.app_labels
  }
  spec {
    replicas = var.app.replicas
    selector {
      match_labels = local.selector
    }
    template {
      metadata {
        labels = merge(local.app_labels, local.selector)
      }
      spec {
        automount_service_account_token = false
        container {
          name  = var.app.name
          image = var.app.image
          port {
            container_port = var.app.port
          }
          resources {
            requests {
              cpu    = var.app.cpu
              memory = var.app.memory
            }
            limits {
              cpu    = var.app.cpu
              memory = var.app.memory
            }
          }
        }
      }
    }
  }
  wait_for_rollout = false # KWOK runs the pods; a plan-level test has no cluster at all
  depends_on       = [kubernetes_resource_quota.this, kubernetes_limit_range.this]
}

resource "kubernetes_service" "app" {
  metadata {
    name      = var.app.name
    namespace = kubernetes_namespace.this.metadata[0].name
    labels    = local.app_labels
  }
  spec {
    selector = local.selector
    port {
      port        = 80
      target_port = tostring(var.app.port)
    }
  }
}

# The 1.13.4 provider's kubernetes_pod_disruption_budget speaks policy/v1beta1, which Kubernetes
# removed in 1.25; kubectl_manifest applies the policy/v1 object as written.
resource "kubectl_manifest" "pdb" {
  yaml_body = yamlencode({
    apiVersion = "policy/v1"
    kind       = "PodDisruptionBudget"
    metadata = {
      name      = var.app.name
      namespace = kubernetes_namespace.this.metadata[0].name
      labels    = local.app_labels
    }
    spec = {
      minAvailable = var.min_available
      selector     = { matchLabels = local.selector }
    }
  })
  lifecycle {
    precondition {
      condition     = var.min_available < var.app.replicas
      error_message = "min_available must be fewer than app.replicas, or no node could ever be drained."
    }
  }
}
