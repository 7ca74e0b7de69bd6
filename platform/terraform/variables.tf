variable "kubeconfig" {
  description = "Path of the admin kubeconfig (opslab sets TF_VAR_kubeconfig to .opslab/kubeconfig)."
  type        = string
}

variable "namespaces" {
  description = "Namespaces of the platform, with their resource quota and default container limits."
  type = map(object({
    purpose        = string
    pods           = number
    requests_cpu   = string
    requests_mem   = string
    limits_cpu     = string
    limits_mem     = string
    default_cpu    = string
    default_mem    = string
    default_req_cpu = string
    default_req_mem = string
  }))
  default = {
    shop = {
      purpose = "the simulated production system"
      pods = 200, requests_cpu = "40", requests_mem = "80Gi", limits_cpu = "80", limits_mem = "160Gi"
      default_cpu = "500m", default_mem = "512Mi", default_req_cpu = "100m", default_req_mem = "128Mi"
    }
    monitoring = {
      purpose = "exporters and monitoring add-ons"
      pods = 50, requests_cpu = "8", requests_mem = "16Gi", limits_cpu = "16", limits_mem = "32Gi"
      default_cpu = "250m", default_mem = "256Mi", default_req_cpu = "50m", default_req_mem = "64Mi"
    }
    labs = {
      purpose = "learners' lab workloads"
      pods = 100, requests_cpu = "16", requests_mem = "32Gi", limits_cpu = "32", limits_mem = "64Gi"
      default_cpu = "250m", default_mem = "256Mi", default_req_cpu = "50m", default_req_mem = "64Mi"
    }
  }
}
