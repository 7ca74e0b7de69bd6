# The module's interface (given). Task 1: add a validation block to each variable whose values can be
# wrong, with an error_message that names the variable and says what a good value looks like.

variable "team" {
  description = "The team that owns the tenant: a DNS label, used as the namespace's prefix and in its labels."
  type        = string
}

variable "environment" {
  description = "Which environment this tenant lives in: dev, staging or prod."
  type        = string
}

variable "owner" {
  description = "Who answers for the tenant: an e-mail address, put in the owner label's annotation."
  type        = string
}

variable "quota" {
  description = "The namespace's ResourceQuota: CPU and memory requests and limits, and pods."
  type = object({
    requests_cpu    = string
    requests_memory = string
    limits_cpu      = string
    limits_memory   = string
    pods            = number
  })
  default = {
    requests_cpu    = "2"
    requests_memory = "4Gi"
    limits_cpu      = "4"
    limits_memory   = "8Gi"
    pods            = 20
  }
}

variable "app" {
  description = "The team's app: its image, replicas, container port, and each pod's CPU and memory request and limit."
  type = object({
    name     = string
    image    = string
    replicas = optional(number, 2)
    port     = optional(number, 8080)
    cpu      = optional(string, "100m")
    memory   = optional(string, "128Mi")
  })
}

variable "min_available" {
  description = "Pods of the app the PodDisruptionBudget keeps through voluntary disruptions (drains); must be fewer than the replicas."
  type        = number
  default     = 1
}

variable "allowed_namespaces" {
  description = "Namespaces whose pods may reach the app (besides the tenant's own)."
  type        = list(string)
  default     = []
}
