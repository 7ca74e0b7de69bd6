# A tenant: one team's namespace in one environment, with its guard rails and its app.
# Task 1: the README lists every object and the resource names the grader reads
# (kubernetes_namespace.this, kubernetes_resource_quota.this, kubernetes_limit_range.this,
# kubernetes_service_account.deployer, kubernetes_role.deployer, kubernetes_role_binding.deployer,
# kubernetes_network_policy.default_deny and .app, kubernetes_deployment.app, kubernetes_service.app,
# and kubectl_manifest.pdb: the PodDisruptionBudget, as a policy/v1 manifest).

resource "kubernetes_namespace" "this" {
  metadata {
    name = var.team # TODO <team>-<environment>, with the three labels
  }
}
