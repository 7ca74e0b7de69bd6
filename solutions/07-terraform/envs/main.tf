# One configuration for every environment: the workspace (dev, staging, prod) picks the variables
# file and names the state. State is a Secret per workspace in the cluster, locked by a Lease:
#   terraform init -backend-config=namespace=<state namespace> -backend-config=config_path=<kubeconfig>
#   terraform workspace select -or-create dev
#   terraform plan -var-file=dev.tfvars -out=dev.tfplan

terraform {
  required_version = ">= 1.7"
  backend "kubernetes" {
    secret_suffix = "lab07-tenants"
  }
  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 1.13"
    }
    kubectl = {
      source  = "gavinbunney/kubectl"
      version = "~> 1.19"
    }
  }
}

provider "kubernetes" {
  config_path = var.kubeconfig
}

provider "kubectl" {
  config_path      = var.kubeconfig
  load_config_file = true
}

variable "kubeconfig" {
  description = "The kubeconfig to apply with (a least-privilege identity, not the admin's)."
  type        = string
}

variable "environment" {
  description = "Must match the workspace: a tfvars file for one environment applied in another's state is refused."
  type        = string
}

variable "tenants" {
  description = "The environment's tenants, by team."
  type = map(object({
    owner    = string
    image    = string
    replicas = number
    quota = object({
      requests_cpu    = string
      requests_memory = string
      limits_cpu      = string
      limits_memory   = string
      pods            = number
    })
    allowed_namespaces = optional(list(string), [])
  }))
}

resource "terraform_data" "workspace_guard" {
  input = terraform.workspace
  lifecycle {
    precondition {
      condition     = terraform.workspace == var.environment
      error_message = "this is workspace '${terraform.workspace}' but the variables are for '${var.environment}': select the workspace with `terraform workspace select ${var.environment}`."
    }
  }
}

module "tenant" {
  source   = "../modules/tenant"
  for_each = var.tenants

  team               = each.key
  environment        = var.environment
  owner              = each.value.owner
  quota              = each.value.quota
  allowed_namespaces = each.value.allowed_namespaces
  app = {
    name     = "app"
    image    = each.value.image
    replicas = each.value.replicas
  }
  min_available = each.value.replicas - 1
}

# Task 6, a refactor without destroy. The first version of this configuration called the module
# "team"; state written then says module.team["payments"]..., and without this block a plan would
# destroy every tenant and create it again under the new name.
moved {
  from = module.team
  to   = module.tenant
}

variable "adopt" {
  description = "Teams whose namespace (<team>-<environment>) was made by hand before Terraform managed it: imported, not created."
  type        = set(string)
  default     = []
}

import {
  for_each = var.adopt
  to       = module.tenant[each.key].kubernetes_namespace.this
  id       = "${each.key}-${var.environment}"
}

output "namespaces" {
  description = "Each team's namespace in this environment."
  value       = { for team, t in module.tenant : team => t.namespace }
}
