# The server settings the task definition carries, with a mocked AWS provider (no account needed):
# the timeouts that must agree with the load balancer's, the trusted proxies, and an open-file
# limit that passes the server's start-up check (MAX_CONNECTIONS + MAX_HTTP_CONNECTIONS + 16 + 64).

mock_provider "aws" {
  mock_data "aws_region" {
    defaults = { name = "eu-west-1", region = "eu-west-1" }
  }
  mock_data "aws_iam_policy_document" {
    defaults = { json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}" }
  }
}

variables {
  name                            = "websocket-test"
  cluster_name                    = "websocket-test"
  vpc_id                          = "vpc-0123456789abcdef0"
  subnet_ids                      = ["subnet-0123456789abcdef0"]
  assign_public_ip                = true
  image                           = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/websocket-service:1a2b3c4d"
  ecr_repository_arn              = "arn:aws:ecr:eu-west-1:123456789012:repository/websocket-service"
  target_group_arn                = "arn:aws:elasticloadbalancing:eu-west-1:123456789012:targetgroup/websocket-test/0123456789abcdef"
  load_balancer_security_group_id = "sg-0123456789abcdef0"
  secret_environment              = { REDIS_URL = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:websocket-test-redis-url-AbCdEf" }
}

run "defaults_fit_the_load_balancer_and_the_file_limit" {
  command = plan

  assert {
    condition     = local.environment.HTTP_IDLE_TIMEOUT == "75s"
    error_message = "HTTP_IDLE_TIMEOUT must outlast the ALB's 60 s idle timeout."
  }
  assert {
    condition     = local.environment.TRUSTED_PROXY_HOPS == "2"
    error_message = "Behind CloudFront and the ALB, two proxies append to X-Forwarded-For."
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.this.container_definitions)[0].ulimits[0].softLimit >= 10000 + 1024 + 16 + 64
    error_message = "nofile must cover MAX_CONNECTIONS + MAX_HTTP_CONNECTIONS + 16 + 64, or the server refuses to start."
  }
}

run "a_large_task_keeps_its_file_limit_ahead" {
  command = plan

  variables {
    max_connections_per_task           = 100000
    load_balancer_idle_timeout_seconds = 3600
  }

  assert {
    condition     = local.environment.HTTP_IDLE_TIMEOUT == "3615s"
    error_message = "HTTP_IDLE_TIMEOUT follows the load balancer's idle timeout."
  }
  assert {
    condition = alltrue([
      for limit in jsondecode(aws_ecs_task_definition.this.container_definitions)[0].ulimits :
      limit.softLimit >= 100000 + tonumber(local.environment.MAX_HTTP_CONNECTIONS) + 16 + 64 && limit.hardLimit == limit.softLimit
    ])
    error_message = "nofile must cover MAX_CONNECTIONS + MAX_HTTP_CONNECTIONS + 16 + 64."
  }
}

run "several_tasks_without_a_backplane_are_refused" {
  command = plan

  variables {
    max_capacity       = 2
    secret_environment = {}
  }

  expect_failures = [aws_ecs_service.this]
}

run "a_single_task_needs_no_backplane" {
  command = plan

  variables {
    desired_count      = 1
    min_capacity       = 1
    max_capacity       = 1
    secret_environment = {}
  }

  assert {
    condition     = aws_appautoscaling_target.this.max_capacity == 1
    error_message = "One task broadcasts to every client by itself."
  }
}
