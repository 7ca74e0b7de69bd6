output "namespaces" {
  description = "The namespaces the platform manages."
  value       = sort([for ns in kubernetes_namespace.platform : ns.metadata[0].name])
}

output "lab_service_account" {
  description = "The least-privilege ServiceAccount for lab workloads, as namespace/name."
  value       = "${kubernetes_service_account.lab_runner.metadata[0].namespace}/${kubernetes_service_account.lab_runner.metadata[0].name}"
}
