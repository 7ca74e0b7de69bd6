# Apply-level test: the module applied to a real cluster (the platform's), checked, then destroyed by
# `terraform test` itself. Not in tests/ (those need no cluster and run everywhere):
#
#   KUBECONFIG=... terraform test -test-directory=tests/cluster -var team=<a team with no namespace yet>
#
# Both providers read the cluster from KUBECONFIG; its identity must be allowed to create namespaces
# and what goes in them.

variables {
  environment = "dev"
  owner       = "platform-team@example.com"
  app = {
    name     = "web"
    image    = "opslab/tenant-test:1.0.0"
    replicas = 2
  }
}

run "applies_a_tenant_the_cluster_accepts" {
  command = apply

  assert {
    condition     = kubernetes_namespace.this.metadata[0].uid != ""
    error_message = "the cluster made the namespace"
  }
  assert {
    condition     = kubernetes_resource_quota.this.spec[0].hard["pods"] == "20"
    error_message = "the quota the cluster holds allows 20 pods"
  }
  assert {
    condition     = kubernetes_deployment.app.spec[0].replicas == 2
    error_message = "the Deployment the cluster holds has two replicas"
  }
  assert {
    condition     = output.namespace == "${var.team}-dev"
    error_message = "the namespace output names the namespace made"
  }
}
