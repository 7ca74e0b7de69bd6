# Plan-level tests: no cluster, a mocked provider. Run `terraform test` (or `tofu test`) in modules/tenant.

mock_provider "kubernetes" {}
mock_provider "kubectl" {}

variables {
  team        = "payments"
  environment = "dev"
  owner       = "payments-team@example.com"
  app = {
    name  = "api"
    image = "opslab/payments-api:1.4.2"
  }
}

run "defaults_give_a_guarded_namespace" {
  command = plan

  assert {
    condition     = kubernetes_namespace.this.metadata[0].name == "payments-dev"
    error_message = "the namespace is <team>-<environment>"
  }
  # TODO assert on the labels, the quota, the replicas, the budget and the outputs
}

# TODO runs with expect_failures = [var.team], [var.app], ... for bad inputs
