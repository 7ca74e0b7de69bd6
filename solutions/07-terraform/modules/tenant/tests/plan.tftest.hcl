# Plan-level tests: no cluster, a mocked provider. `terraform test` (or `tofu test`) in modules/tenant.

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
  assert {
    condition     = kubernetes_namespace.this.metadata[0].labels["opslab.dev/team"] == "payments"
    error_message = "the namespace carries the team label"
  }
  assert {
    condition     = kubernetes_resource_quota.this.spec[0].hard["pods"] == "20"
    error_message = "the default quota allows 20 pods"
  }
  assert {
    condition     = kubernetes_deployment.app.spec[0].replicas == 2
    error_message = "two replicas by default"
  }
  assert {
    condition     = yamldecode(kubectl_manifest.pdb.yaml_body).spec.minAvailable == 1
    error_message = "the budget keeps one pod through a drain"
  }
  assert {
    condition     = output.app_url == "http://api.payments-dev.svc.cluster.local"
    error_message = "app_url names the Service in the tenant's namespace"
  }
}

run "allowed_namespaces_reach_the_app" {
  command = plan
  variables {
    allowed_namespaces = ["gateway-dev", "monitoring"]
  }
  assert {
    condition     = length(kubernetes_network_policy.app.spec[0].ingress[0].from) == 3
    error_message = "the tenant's own namespace and the two allowed ones"
  }
}

run "a_team_that_is_not_a_dns_label_is_refused" {
  command = plan
  variables {
    team = "Payments_Team"
  }
  expect_failures = [var.team]
}

run "an_unknown_environment_is_refused" {
  command = plan
  variables {
    environment = "qa"
  }
  expect_failures = [var.environment]
}

run "a_latest_image_is_refused" {
  command = plan
  variables {
    app = { name = "api", image = "opslab/payments-api:latest" }
  }
  expect_failures = [var.app]
}

run "an_untagged_image_is_refused" {
  command = plan
  variables {
    app = { name = "api", image = "opslab/payments-api" }
  }
  expect_failures = [var.app]
}

run "a_budget_that_blocks_every_drain_is_refused" {
  command = plan
  variables {
    app           = { name = "api", image = "opslab/payments-api:1.4.2", replicas = 2 }
    min_available = 2
  }
  expect_failures = [kubectl_manifest.pdb]
}
