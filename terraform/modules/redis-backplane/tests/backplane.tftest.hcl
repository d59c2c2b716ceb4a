# One node by default (the cheapest backplane), failover with replicas, and the auth token never in
# clear: ephemeral when drawn, sensitive wherever Terraform holds it. Mocked provider.

mock_provider "aws" {
  mock_data "aws_secretsmanager_secret_version" {
    defaults = { secret_string = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ01" }
  }
}

variables {
  name                     = "websocket-test"
  vpc_id                   = "vpc-0123456789abcdef0"
  subnet_ids               = ["subnet-0123456789abcdef0", "subnet-0123456789abcdef1"]
  client_security_group_id = "sg-0123456789abcdef0"
  auth_token_secret = {
    arn        = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:websocket-test-redis-token-AbCdEf"
    version_id = "00000000-0000-0000-0000-000000000001"
  }
}

run "one_node_by_default" {
  command = apply

  assert {
    condition     = aws_elasticache_replication_group.this.num_cache_clusters == 1 && !aws_elasticache_replication_group.this.automatic_failover_enabled && !aws_elasticache_replication_group.this.multi_az_enabled
    error_message = "The default backplane is a single node without failover."
  }
  assert {
    condition     = aws_elasticache_replication_group.this.engine == "valkey" && aws_elasticache_replication_group.this.transit_encryption_enabled
    error_message = "Valkey over TLS."
  }
  assert {
    condition     = issensitive(aws_elasticache_replication_group.this.auth_token) && issensitive(aws_secretsmanager_secret_version.redis_url.secret_string)
    error_message = "The auth token and the URL that carries it are sensitive wherever Terraform holds them."
  }
}

run "replicas_add_failover" {
  command = plan

  variables {
    replicas = 1
  }

  assert {
    condition     = aws_elasticache_replication_group.this.num_cache_clusters == 2 && aws_elasticache_replication_group.this.automatic_failover_enabled && aws_elasticache_replication_group.this.multi_az_enabled
    error_message = "A replica brings automatic failover and Multi-AZ."
  }
}

run "replicas_are_bounded" {
  command = plan

  variables {
    replicas = 6
  }

  expect_failures = [var.replicas]
}
