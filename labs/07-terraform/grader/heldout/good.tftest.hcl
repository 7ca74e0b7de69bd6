# Held out: the grader drops this file into a copy of your modules/tenant/tests/ and runs it.

mock_provider "kubernetes" {}
mock_provider "kubectl" {}

variables {
  team        = "ledger"
  environment = "staging"
  owner       = "ledger-oncall@example.org"
  app = {
    name     = "books"
    image    = "registry.example.org/ledger/books@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    replicas = 3
    port     = 9000
  }
  min_available = 2
  quota = {
    requests_cpu    = "1500m"
    requests_memory = "3Gi"
    limits_cpu      = "3"
    limits_memory   = "6Gi"
    pods            = 12
  }
}

run "heldout_good_inputs" {
  command = plan
  assert {
    condition     = output.namespace == "ledger-staging"
    error_message = "output namespace: expected ledger-staging"
  }
  assert {
    condition     = kubernetes_namespace.this.metadata[0].labels["opslab.dev/team"] == "ledger" && kubernetes_namespace.this.metadata[0].labels["opslab.dev/environment"] == "staging" && can(kubernetes_namespace.this.metadata[0].labels["opslab.dev/owner"])
    error_message = "the namespace's labels: opslab.dev/team, opslab.dev/environment and opslab.dev/owner"
  }
  assert {
    condition     = kubernetes_resource_quota.this.spec[0].hard["pods"] == "12" && kubernetes_resource_quota.this.spec[0].hard["limits.memory"] == "6Gi" && kubernetes_resource_quota.this.spec[0].hard["requests.cpu"] == "1500m"
    error_message = "the quota's hard limits come from var.quota (pods, requests.cpu, limits.memory, ...)"
  }
  assert {
    condition     = kubernetes_deployment.app.spec[0].replicas == 3 && kubernetes_deployment.app.spec[0].template[0].spec[0].container[0].image == var.app.image
    error_message = "the Deployment runs var.app.image with var.app.replicas replicas"
  }
  assert {
    condition     = kubernetes_deployment.app.spec[0].template[0].spec[0].container[0].port[0].container_port == 9000 && kubernetes_service.app.spec[0].port[0].target_port == "9000"
    error_message = "the container port and the Service's target port are var.app.port"
  }
  assert {
    condition     = yamldecode(kubectl_manifest.pdb.yaml_body).apiVersion == "policy/v1" && yamldecode(kubectl_manifest.pdb.yaml_body).kind == "PodDisruptionBudget" && yamldecode(kubectl_manifest.pdb.yaml_body).metadata.namespace == "ledger-staging" && yamldecode(kubectl_manifest.pdb.yaml_body).spec.minAvailable == 2 && length(yamldecode(kubectl_manifest.pdb.yaml_body).spec.selector.matchLabels) == length(kubernetes_deployment.app.spec[0].selector[0].match_labels) && alltrue([for k, v in kubernetes_deployment.app.spec[0].selector[0].match_labels : lookup(yamldecode(kubectl_manifest.pdb.yaml_body).spec.selector.matchLabels, k, "") == v])
    error_message = "the PodDisruptionBudget keeps var.min_available pods of the app (the Deployment's selector)"
  }
  assert {
    condition     = kubernetes_role_binding.deployer.subject[0].name == kubernetes_service_account.deployer.metadata[0].name && kubernetes_role_binding.deployer.role_ref[0].kind == "Role"
    error_message = "the deployer ServiceAccount is bound to a namespaced Role (not a ClusterRole)"
  }
  assert {
    condition     = alltrue([for r in kubernetes_role.deployer.rule : !contains(r.resources, "secrets") && !contains(r.verbs, "*") && !contains(r.resources, "*")])
    error_message = "the deployer Role grants no secrets and no wildcards"
  }
  assert {
    condition     = output.app_url == "http://books.ledger-staging.svc.cluster.local"
    error_message = "output app_url: expected http://books.ledger-staging.svc.cluster.local"
  }
}
