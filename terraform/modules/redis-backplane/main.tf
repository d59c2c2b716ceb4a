# A Valkey replication group (one node by default; with replicas, automatic failover across zones)
# that the tasks use as a pub/sub backplane, reachable over TLS with an auth token, from the tasks
# only. The server reads REDIS_URL (rediss://:TOKEN@host:6379) from a Secrets Manager secret.

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

# The auth token lives in a secret written elsewhere (the root draws it with the random-secret
# module, so it never appears in clear in a plan or the state); Terraform reads it back through
# the data source, which the provider marks sensitive, so the replication group and REDIS_URL hold
# it marked.
data "aws_secretsmanager_secret_version" "auth_token" {
  secret_id  = var.auth_token_secret.arn
  version_id = var.auth_token_secret.version_id
}

resource "aws_elasticache_replication_group" "this" {
  #checkov:skip=CKV_AWS_191:Encrypted at rest with the AWS owned key; a pub/sub backplane stores no data worth a customer managed key.
  #checkov:skip=CKV2_AWS_50:One node by default, the cheapest backplane: pub/sub keeps no data to lose, a failed node is replaced and the servers reconnect; replicas = 1 adds Multi-AZ automatic failover.
  replication_group_id = var.name
  description          = "Pub/sub backplane of ${var.name}"
  engine               = "valkey"
  engine_version       = var.engine_version
  node_type            = var.node_type
  port                 = local.port

  num_cache_clusters         = 1 + var.replicas
  automatic_failover_enabled = var.replicas > 0
  multi_az_enabled           = var.replicas > 0
  subnet_group_name          = aws_elasticache_subnet_group.this.name
  security_group_ids         = [aws_security_group.this.id]

  at_rest_encryption_enabled = true
  transit_encryption_enabled = true
  auth_token                 = data.aws_secretsmanager_secret_version.auth_token.secret_string

  # Pub/sub keeps nothing to back up.
  snapshot_retention_limit = 0
  apply_immediately        = true

  lifecycle {
    # ElastiCache never returns the token, so a refresh cannot confirm it; it is set when the group
    # is created (changing it in place would need auth_token_update_strategy's two steps), and the
    # secret it comes from is drawn once, so there is nothing to follow afterwards.
    ignore_changes = [auth_token]
  }
}

resource "aws_secretsmanager_secret" "redis_url" {
  #checkov:skip=CKV_AWS_149:Encrypted with the AWS managed key; a customer managed key would add cost and a key policy for the execution role alone.
  #checkov:skip=CKV2_AWS_57:No automatic rotation: ElastiCache has no rotation function for auth tokens; the URL follows the replication group.
  name_prefix = "${var.name}-redis-url-"
  description = "REDIS_URL of ${var.name}: rediss://:TOKEN@primary:6379"
  # `make destroy` deletes it at once, so a new deployment of the same name can follow.
  recovery_window_in_days = 0
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://:${data.aws_secretsmanager_secret_version.auth_token.secret_string}@${aws_elasticache_replication_group.this.primary_endpoint_address}:${local.port}"
}
