# The task definition and the service, with a mocked AWS provider (no account needed): the server
# settings (timeouts that must agree with the load balancer's, the drain spread and the room the
# drain keeps beyond it, the trusted proxies, an open-file limit that passes the server's start-up
# check: MAX_CONNECTIONS + MAX_HTTP_CONNECTIONS + 16 + 64), the backplane precondition, Fargate's
# cpu/memory combinations refused at plan time rather than by RegisterTaskDefinition halfway
# through an apply, and ECS Exec's role and writable volumes only when it is on.

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

run "every_edge_of_the_fargate_table_is_accepted" {
  command = plan

  variables {
    cpu    = 16384
    memory = 122880
  }

  assert {
    condition     = aws_ecs_task_definition.this.memory == "122880"
    error_message = "16 vCPU with 120 GiB is a Fargate size."
  }
}

run "four_vcpu_stops_at_30_gib" {
  command = plan

  variables {
    cpu    = 4096
    memory = 32768
  }

  expect_failures = [var.memory]
}

run "eight_vcpu_goes_in_4_gib_steps" {
  command = plan

  variables {
    cpu    = 8192
    memory = 17408
  }

  expect_failures = [var.memory]
}

run "sixteen_vcpu_goes_in_8_gib_steps" {
  command = plan

  variables {
    cpu    = 16384
    memory = 36864
  }

  expect_failures = [var.memory]
}

run "a_quarter_vcpu_takes_at_most_2_gib" {
  command = plan

  variables {
    cpu    = 256
    memory = 3072
  }

  expect_failures = [var.memory]
}

run "a_cpu_size_fargate_does_not_have" {
  command = plan

  variables {
    cpu    = 3072
    memory = 8192
  }

  expect_failures = [var.cpu]
}

run "ec2_capacity_is_held_to_the_same_table" {
  command = plan

  variables {
    capacity_provider = "websocket-test-ec2"
    cpu               = 1536
    memory            = 3072
  }

  expect_failures = [var.cpu]
}

run "exec_off_adds_nothing" {
  command = plan

  assert {
    condition     = length(aws_iam_role.task) == 0 && length(aws_ecs_task_definition.this.volume) == 0
    error_message = "Without ECS Exec there is no task role and no volume."
  }
  assert {
    condition     = length(jsondecode(aws_ecs_task_definition.this.container_definitions)[0].mountPoints) == 0
    error_message = "Without ECS Exec nothing is mounted."
  }
}

run "exec_on_keeps_the_root_read_only_and_gives_the_agent_its_directories" {
  command = plan

  variables {
    enable_execute_command = true
  }

  assert {
    condition     = aws_ecs_service.this.enable_execute_command && length(aws_iam_role.task) == 1
    error_message = "ECS Exec needs the service switch and a task role for its SSM channels."
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.this.container_definitions)[0].readonlyRootFilesystem
    error_message = "The root file system stays read-only with ECS Exec."
  }
  assert {
    condition = toset([
      for mount in jsondecode(aws_ecs_task_definition.this.container_definitions)[0].mountPoints : mount.containerPath if !mount.readOnly
    ]) == toset(["/var/lib/amazon", "/var/log/amazon"])
    error_message = "The SSM agent writes under /var/lib/amazon and /var/log/amazon: both must be writable volumes."
  }
  assert {
    condition     = toset([for volume in aws_ecs_task_definition.this.volume : volume.name]) == toset(["var-lib-amazon", "var-log-amazon"])
    error_message = "Each writable directory is a task volume of its own."
  }
}

run "extra_environment_reaches_the_container" {
  command = plan

  variables {
    extra_environment = {
      AUTH_JWKS_URL = "https://idp.example.com/.well-known/jwks.json"
      AUTH_ISSUER   = "https://idp.example.com/"
    }
  }

  assert {
    condition = contains([
      for variable in jsondecode(aws_ecs_task_definition.this.container_definitions)[0].environment : variable.value if variable.name == "AUTH_ISSUER"
    ], "https://idp.example.com/")
    error_message = "extra_environment is part of the container's environment."
  }
  assert {
    condition = contains([
      for variable in jsondecode(aws_ecs_task_definition.this.container_definitions)[0].environment : variable.name
    ], "PORT")
    error_message = "The module's own settings stay."
  }
}

run "extra_environment_cannot_override_the_module" {
  command = plan

  variables {
    extra_environment = { MAX_CONNECTIONS = "5" }
  }

  expect_failures = [aws_ecs_service.this]
}

run "extra_environment_cannot_shadow_a_secret" {
  command = plan

  variables {
    extra_environment = { REDIS_URL = "redis://plain" }
  }

  expect_failures = [aws_ecs_service.this]
}

run "the_drain_spread_defaults_to_20_s_within_the_drain" {
  command = plan

  assert {
    condition     = local.environment.DRAIN_TIMEOUT == "30s" && local.environment.DRAIN_SPREAD == "20s"
    error_message = "By default /v1/ws clients are closed over 20 s of the 30 s drain."
  }
}

run "an_unset_drain_spread_shrinks_to_fit_a_short_drain" {
  command = plan

  variables {
    drain_timeout_seconds = 12
  }

  assert {
    condition     = local.environment.DRAIN_SPREAD == "7s"
    error_message = "Unset, DRAIN_SPREAD is the drain less the last clients' 5 s, as the server's own default."
  }
}

run "a_drain_spread_set_is_passed_on" {
  command = plan

  variables {
    drain_timeout_seconds = 90
    drain_spread_seconds  = 60
  }

  assert {
    condition     = local.environment.DRAIN_SPREAD == "60s" && local.environment.DRAIN_TIMEOUT == "90s"
    error_message = "DRAIN_SPREAD is drain_spread_seconds."
  }
  assert {
    condition     = jsondecode(aws_ecs_task_definition.this.container_definitions)[0].stopTimeout == 105
    error_message = "stopTimeout follows the drain, which holds the spread."
  }
}

run "no_spread_closes_everyone_at_once_even_with_a_short_drain" {
  command = plan

  variables {
    drain_timeout_seconds = 3
    drain_spread_seconds  = 0
  }

  assert {
    condition     = local.environment.DRAIN_SPREAD == "0s"
    error_message = "0 is always accepted: no spread."
  }
}

run "a_drain_spread_that_leaves_no_time_for_the_last_closes_is_refused" {
  command = plan

  variables {
    drain_timeout_seconds = 30
    drain_spread_seconds  = 26
  }

  expect_failures = [var.drain_spread_seconds]
}

run "a_negative_drain_spread_is_refused" {
  command = plan

  variables {
    drain_spread_seconds = -1
  }

  expect_failures = [var.drain_spread_seconds]
}
