environment = "dev"
tenants = {
  payments = {
    owner    = "payments-team@example.com"
    image    = "opslab/shop-payments:1.0.0"
    replicas = 1
    quota    = { requests_cpu = "1", requests_memory = "1Gi", limits_cpu = "2", limits_memory = "2Gi", pods = 6 }
  }
  catalog = {
    owner              = "catalog-team@example.com"
    image              = "opslab/shop-catalog:1.0.0"
    replicas           = 1
    quota              = { requests_cpu = "1", requests_memory = "1Gi", limits_cpu = "2", limits_memory = "2Gi", pods = 6 }
    allowed_namespaces = ["payments-dev"]
  }
}
