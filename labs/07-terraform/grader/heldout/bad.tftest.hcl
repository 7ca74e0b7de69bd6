# Held out: the grader drops this file into a copy of your modules/tenant/tests/ and runs it.

mock_provider "kubernetes" {}
mock_provider "kubectl" {}

variables {
  team        = "ledger"
  environment = "staging"
  owner       = "ledger-oncall@example.org"
  app = {
    name     = "books"
    image    = "registry.example.org/ledger/books@sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
    replicas = 3
    port     = 9000
  }
  min_available = 2
  quota = {
    requests_cpu    = "1500m"
    requests_memory = "3Gi"
    limits_cpu      = "3"
    limits_memory   = "6Gi"
    pods            = 12
  }
}

run "heldout_accepts_good_inputs" {
  command = plan
}

run "heldout_refuses_a_team_with_capitals" {
  command = plan
  variables {
    team = "Ledger"
  }
  expect_failures = [var.team]
}

run "heldout_refuses_a_team_too_long" {
  command = plan
  variables {
    team = "a-team-name-that-goes-on-and-on-and-on"
  }
  expect_failures = [var.team]
}

run "heldout_refuses_an_unknown_environment" {
  command = plan
  variables {
    environment = "production"
  }
  expect_failures = [var.environment]
}

run "heldout_refuses_an_owner_that_is_not_an_address" {
  command = plan
  variables {
    owner = "ledger team"
  }
  expect_failures = [var.owner]
}

run "heldout_refuses_a_latest_image" {
  command = plan
  variables {
    app = { name = "books", image = "registry.example.org/ledger/books:latest" }
  }
  expect_failures = [var.app]
}

run "heldout_refuses_an_image_without_a_tag" {
  command = plan
  variables {
    app = { name = "books", image = "registry.example.org/ledger/books" }
  }
  expect_failures = [var.app]
}

run "heldout_refuses_zero_pods" {
  command = plan
  variables {
    quota = { requests_cpu = "1", requests_memory = "1Gi", limits_cpu = "1", limits_memory = "1Gi", pods = 0 }
  }
  expect_failures = [var.quota]
}

run "heldout_refuses_a_budget_that_blocks_every_drain" {
  command = plan
  variables {
    app           = { name = "books", image = "registry.example.org/ledger/books:2.0.1", replicas = 2 }
    min_available = 2
  }
  expect_failures = [kubectl_manifest.pdb]
}
