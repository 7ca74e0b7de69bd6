environment = "staging"
tenants = {
  payments = {
    owner    = "payments-team@example.com"
    image    = "opslab/shop-payments:1.0.0"
    replicas = 2
    quota    = { requests_cpu = "2", requests_memory = "2Gi", limits_cpu = "4", limits_memory = "4Gi", pods = 10 }
  }
  catalog = {
    owner              = "catalog-team@example.com"
    image              = "opslab/shop-catalog:1.0.0"
    replicas           = 2
    quota              = { requests_cpu = "2", requests_memory = "2Gi", limits_cpu = "4", limits_memory = "4Gi", pods = 10 }
    allowed_namespaces = ["payments-staging"]
  }
}
