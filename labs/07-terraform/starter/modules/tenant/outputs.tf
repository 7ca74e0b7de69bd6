output "namespace" {
  description = "The tenant's namespace."
  value       = kubernetes_namespace.this.metadata[0].name
}

# TODO outputs service_account ("<namespace>/<name>"), app_url and labels (see the README)
