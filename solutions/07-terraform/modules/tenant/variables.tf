variable "team" {
  description = "The team that owns the tenant: a DNS label, used as the namespace's prefix and in its labels."
  type        = string
  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,28}[a-z0-9])?$", var.team))
    error_message = "team must be a DNS label of at most 30 characters: lowercase letters, digits and '-', starting with a letter."
  }
}

variable "environment" {
  description = "Which environment this tenant lives in: dev, staging or prod."
  type        = string
  validation {
    condition     = contains(["dev", "staging", "prod"], var.environment)
    error_message = "environment must be one of dev, staging or prod."
  }
}

variable "owner" {
  description = "Who answers for the tenant: an e-mail address, put in the owner label's annotation."
  type        = string
  validation {
    condition     = can(regex("^[^@[:space:]]+@[^@[:space:]]+\\.[a-z]{2,}$", var.owner))
    error_message = "owner must be an e-mail address such as team-a@example.com."
  }
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
  validation {
    condition     = var.quota.pods >= 1 && var.quota.pods <= 200 && floor(var.quota.pods) == var.quota.pods
    error_message = "quota.pods must be a whole number from 1 to 200."
  }
  validation {
    condition = alltrue([
      for v in [var.quota.requests_cpu, var.quota.limits_cpu] : can(regex("^[0-9]+(\\.[0-9]+)?m?$", v))
    ])
    error_message = "quota CPU values must be quantities such as \"500m\" or \"2\"."
  }
  validation {
    condition = alltrue([
      for v in [var.quota.requests_memory, var.quota.limits_memory] : can(regex("^[0-9]+(Ki|Mi|Gi|Ti)$", v))
    ])
    error_message = "quota memory values must be quantities such as \"512Mi\" or \"4Gi\"."
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
  validation {
    condition     = can(regex("^[a-z]([-a-z0-9]{0,40}[a-z0-9])?$", var.app.name))
    error_message = "app.name must be a DNS label: lowercase letters, digits and '-', starting with a letter."
  }
  validation {
    condition     = can(regex("^[^:@[:space:]]+(:[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?(@sha256:[a-f0-9]{64})?$", var.app.image)) && !endswith(var.app.image, ":latest") && (strcontains(var.app.image, ":") || strcontains(var.app.image, "@"))
    error_message = "app.image must name a tag or a digest, and not :latest (a moving tag makes every plan a guess)."
  }
  validation {
    condition     = var.app.replicas >= 1 && var.app.replicas <= 20
    error_message = "app.replicas must be from 1 to 20."
  }
  validation {
    condition     = var.app.port >= 1024 && var.app.port <= 65535
    error_message = "app.port must be an unprivileged port, 1024 to 65535."
  }
}

variable "min_available" {
  description = "Pods of the app the PodDisruptionBudget keeps through voluntary disruptions (drains); must be fewer than the replicas."
  type        = number
  default     = 1
  validation {
    condition     = var.min_available >= 0
    error_message = "min_available must not be negative."
  }
}

variable "allowed_namespaces" {
  description = "Namespaces whose pods may reach the app (besides the tenant's own)."
  type        = list(string)
  default     = []
}
