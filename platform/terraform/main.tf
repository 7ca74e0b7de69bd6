# The Terraform-managed part of the embedded platform. Applied by `opslab up`; after it,
# `terraform plan -detailed-exitcode` must report no changes (the tests check it).

resource "kubernetes_namespace" "platform" {
  for_each = var.namespaces

  metadata {
    name = each.key
    labels = {
      "app.kubernetes.io/managed-by" = "terraform"
      "app.kubernetes.io/part-of"    = "opslab"
    }
    annotations = {
      "opslab.dev/purpose" = each.value.purpose
    }
  }
}

resource "kubernetes_resource_quota" "platform" {
  for_each = var.namespaces

  metadata {
    name      = "opslab-quota"
    namespace = kubernetes_namespace.platform[each.key].metadata[0].name
  }
  spec {
    hard = {
      pods              = each.value.pods
      "requests.cpu"    = each.value.requests_cpu
      "requests.memory" = each.value.requests_mem
      "limits.cpu"      = each.value.limits_cpu
      "limits.memory"   = each.value.limits_mem
    }
  }
}

resource "kubernetes_limit_range" "platform" {
  for_each = var.namespaces

  metadata {
    name      = "opslab-defaults"
    namespace = kubernetes_namespace.platform[each.key].metadata[0].name
  }
  spec {
    limit {
      type = "Container"
      default = {
        cpu    = each.value.default_cpu
        memory = each.value.default_mem
      }
      default_request = {
        cpu    = each.value.default_req_cpu
        memory = each.value.default_req_mem
      }
    }
  }
}
