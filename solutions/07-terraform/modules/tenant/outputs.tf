output "namespace" {
  description = "The tenant's namespace."
  value       = kubernetes_namespace.this.metadata[0].name
}

output "service_account" {
  description = "The team's deployer ServiceAccount, as namespace/name."
  value       = "${kubernetes_namespace.this.metadata[0].name}/${kubernetes_service_account.deployer.metadata[0].name}"
}

output "app_url" {
  description = "The app's address inside the cluster."
  value       = "http://${kubernetes_service.app.metadata[0].name}.${kubernetes_namespace.this.metadata[0].name}.svc.cluster.local"
}

output "labels" {
  description = "The labels every object of the tenant carries."
  value       = local.labels
}
