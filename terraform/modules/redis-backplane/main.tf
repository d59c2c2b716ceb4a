# A Valkey replication group (primary and a replica in another zone, automatic failover) that the
# tasks use as a pub/sub backplane, reachable over TLS with an auth token, from the tasks only.
# The server reads REDIS_URL (rediss://:TOKEN@host:6379) from the Secrets Manager secret.

locals {
  port = 6379
}

resource "aws_security_group" "this" {
  name        = "${var.name}-redis"
  description = "Redis backplane of ${var.name}: the tasks only"
  vpc_id      = var.vpc_id

  tags = { Name = "${var.name}-redis" }
}

resource "aws_vpc_security_group_ingress_rule" "from_clients" {
  security_group_id            = aws_security_group.this.id
  description                  = "Redis (TLS) from the tasks"
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
  referenced_security_group_id = var.client_security_group_id
}

resource "aws_vpc_security_group_egress_rule" "clients_to_cache" {
  security_group_id            = var.client_security_group_id
  description                  = "Redis (TLS) to the backplane"
  ip_protocol                  = "tcp"
  from_port                    = local.port
  to_port                      = local.port
  referenced_security_group_id = aws_security_group.this.id
}

resource "aws_elasticache_subnet_group" "this" {
  name       = var.name
  subnet_ids = var.subnet_ids
}

# Read anew on every plan; the token is only used when the cache is created (see ignore_changes).
data "aws_secretsmanager_random_password" "auth_token" {
  password_length     = 64
  exclude_punctuation = true
}

resource "aws_elasticache_replication_group" "this" {
  #checkov:skip=CKV_AWS_191:Encrypted at rest with the AWS owned key; a pub/sub backplane stores no data worth a customer managed key.
  replication_group_id = var.name
  description          = "Pub/sub backplane of ${var.name}"
  engine               = "valkey"
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = local.port

  num_cache_clusters         = 2
  automatic_failover_enabled = true
  multi_az_enabled           = true
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.this.id]

  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  auth_token                 = data.aws_secretsmanager_random_password.auth_token.random_password

  # Pub/sub keeps nothing to back up.
  snapshot_retention_limit = 0
  apply_immediately        = true

  lifecycle {
    # The token is set once; a new random one on every plan must not rotate it.
    ignore_changes = [auth_token]
  }
}

resource "aws_secretsmanager_secret" "redis_url" {
  #checkov:skip=CKV_AWS_149:Encrypted with the AWS managed key; a customer managed key would add cost and a key policy for the execution role alone.
  #checkov:skip=CKV2_AWS_57:No automatic rotation: ElastiCache has no rotation function for auth tokens; replacing the replication group issues a new token and URL (see README).
  name_prefix = "${var.name}-redis-url-"
  description = "REDIS_URL of ${var.name}: rediss://:TOKEN@primary:6379"
  # `make destroy` deletes it at once, so a new deployment of the same name can follow.
  recovery_window_in_days = 0
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id = aws_secretsmanager_secret.redis_url.id
  # The token of this run, which is the one the cache gets when it is created in the same run (the
  # provider does not keep auth_token in the cache's state).
  secret_string = "rediss://:${data.aws_secretsmanager_random_password.auth_token.random_password}@${aws_elasticache_replication_group.this.primary_endpoint_address}:${local.port}"

  lifecycle {
    # Written with the cache and replaced with it; later runs read other random tokens.
    ignore_changes       = [secret_string]
    replace_triggered_by = [aws_elasticache_replication_group.this.id]
  }
}
