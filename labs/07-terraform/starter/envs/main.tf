# One configuration for every environment (task 2): the workspace picks the variables file and names
# the state; state in the kubernetes backend. See the README.

terraform {
  required_version = ">= 1.7"
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
  # TODO backend "kubernetes" { secret_suffix = "lab07-tenants" }
}

# TODO provider, variables kubeconfig, environment and tenants, a guard that the workspace matches
# var.environment, and module "tenant" with for_each over var.tenants

# TODO (task 6) a moved block from module.team to module.tenant, a variable "adopt" (set of teams,
# default []) and an import block with for_each = var.adopt for each adopted team's namespace
