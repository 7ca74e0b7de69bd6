terraform {
  required_version = ">= 1.6.0"

  # State lives in the cluster: a Secret `tfstate-default-platform` in opslab-terraform, locked with a
  # Lease. `opslab up` passes config_path (the kubeconfig) with -backend-config.
  backend "kubernetes" {
    secret_suffix = "platform"
    namespace     = "opslab-terraform"
  }

  required_providers {
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "~> 1.13"
    }
  }
}

provider "kubernetes" {
  config_path    = var.kubeconfig
  load_config_file = true
}
