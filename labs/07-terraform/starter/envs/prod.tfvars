environment = "prod"
tenants = {
  payments = {
    owner    = "payments-team@example.com"
    image    = "opslab/shop-payments:1.0.0"
    replicas = 3
    quota    = { requests_cpu = "4", requests_memory = "4Gi", limits_cpu = "8", limits_memory = "8Gi", pods = 20 }
  }
  catalog = {
    owner              = "catalog-team@example.com"
    image              = "opslab/shop-catalog:1.0.0"
    replicas           = 3
    quota              = { requests_cpu = "4", requests_memory = "4Gi", limits_cpu = "8", limits_memory = "8Gi", pods = 20 }
    allowed_namespaces = ["payments-prod"]
  }
}
