# Only CloudFront may reach the load balancer: internet-facing, its security group admits
# CloudFront's origin-facing servers only; internal, it has no public address and admits only the
# network interfaces of CloudFront's VPC origin. The secret header then proves the request came
# through this distribution and not someone else's. With a certificate the one listener is HTTPS
# on 443, so the header and every frame travel encrypted; without one it is HTTP on 80.

locals {
  # From the flag, not from certificate_arn, which a plan may not know yet: the plan shows the port.
  listener_port = var.https ? 443 : 80
}

data "aws_ec2_managed_prefix_list" "cloudfront_origin_facing" {
  name = "com.amazonaws.global.cloudfront.origin-facing"
}

resource "aws_security_group" "this" {
  name        = "${var.name}-alb"
  description = "Load balancer of ${var.name}: CloudFront only"
  vpc_id      = var.vpc_id

  tags = { Name = "${var.name}-alb" }
}

resource "aws_vpc_security_group_ingress_rule" "from_cloudfront" {
  #checkov:skip=CKV_AWS_260:False positive: the source is CloudFront's origin-facing prefix list or its VPC origin's security group, never 0.0.0.0/0 (the check reads neither field).
  security_group_id = aws_security_group.this.id
  description       = "${var.https ? "HTTPS" : "HTTP"} from ${var.internal ? "CloudFront's VPC origin" : "CloudFront origin-facing servers"}"
  ip_protocol       = "tcp"
  from_port         = local.listener_port
  to_port           = local.listener_port
  # CloudFront gives the VPC origin's network interfaces, in the load balancer's subnets, a
  # security group of its own (CloudFront-VPCOrigins-Service-SG); they are the only way in.
  prefix_list_id               = var.internal ? null : data.aws_ec2_managed_prefix_list.cloudfront_origin_facing.id
  referenced_security_group_id = var.internal ? var.vpc_origin_security_group_id : null
}

resource "aws_vpc_security_group_egress_rule" "to_targets" {
  security_group_id = aws_security_group.this.id
  description       = "Requests and health checks to targets in the VPC"
  ip_protocol       = "tcp"
  from_port         = var.target_port
  to_port           = var.target_port
  cidr_ipv4         = var.vpc_cidr_block
}

resource "aws_lb" "this" {
  #checkov:skip=CKV_AWS_91:Access logs would repeat CloudFront's standard logs: every request reaches the ALB through CloudFront.
  #checkov:skip=CKV_AWS_150:Deletion protection would stop `make destroy`; the ALB holds no data and `make apply` recreates it.
  #checkov:skip=CKV2_AWS_28:No WAF: the ALB answers only CloudFront (prefix list) carrying the secret header; a WebACL belongs on CloudFront and is a cost decision left to the operator.
  #checkov:skip=CKV2_AWS_20:There is one listener and no redirect: HTTPS on 443 with a certificate (a custom domain), else HTTP on 80 for CloudFront, which then has no name the ALB could hold a certificate for.
  name               = var.name
  load_balancer_type = "application"
  internal           = var.internal
  subnets            = var.subnet_ids
  security_groups    = [aws_security_group.this.id]

  drop_invalid_header_fields = true
  idle_timeout               = var.idle_timeout_seconds
}

resource "aws_lb_target_group" "this" {
  #checkov:skip=CKV_AWS_378:HTTP from the ALB to the tasks inside the VPC; TLS ends at CloudFront, and the server speaks plain HTTP/WebSocket.
  name        = var.name
  vpc_id      = var.vpc_id
  target_type = "ip"
  protocol    = "HTTP"
  port        = var.target_port

  deregistration_delay = var.deregistration_delay_seconds

  health_check {
    path                = var.health_check_path
    matcher             = "200"
    interval            = 10
    timeout             = 5
    healthy_threshold   = 2
    unhealthy_threshold = 2
  }
}

# Anything that did not come through CloudFront ends here.
resource "aws_lb_listener" "this" {
  #checkov:skip=CKV_AWS_2:HTTPS whenever the deployment has a domain (certificate_arn); plain HTTP only without one, where CloudFront's origin has no name a certificate could cover (README: what crosses in clear).
  #checkov:skip=CKV_AWS_103:TLS 1.2 or later (ELBSecurityPolicy-TLS13-1-2-2021-06) with a certificate; no TLS without one, see CKV_AWS_2.
  load_balancer_arn = aws_lb.this.arn
  port              = local.listener_port
  protocol          = var.https ? "HTTPS" : "HTTP"
  certificate_arn   = var.certificate_arn
  # TLS 1.3 and 1.2 only, the policy AWS recommends; CloudFront speaks TLS 1.2 to origins.
  ssl_policy = var.https ? "ELBSecurityPolicy-TLS13-1-2-2021-06" : null

  default_action {
    type = "fixed-response"

    fixed_response {
      content_type = "text/plain"
      message_body = "Forbidden"
      status_code  = "403"
    }
  }
}

resource "aws_lb_listener_rule" "forward_with_secret" {
  listener_arn = aws_lb_listener.this.arn
  priority     = 1

  condition {
    http_header {
      http_header_name = var.origin_secret_header_name
      values           = var.origin_secret_header_values
    }
  }

  action {
    type             = "forward"
    target_group_arn = aws_lb_target_group.this.arn
  }
}

# The listener and its ingress rule were HTTP-only; one address each now serves either protocol.
moved {
  from = aws_lb_listener.http
  to   = aws_lb_listener.this
}

moved {
  from = aws_vpc_security_group_ingress_rule.http_from_cloudfront
  to   = aws_vpc_security_group_ingress_rule.from_cloudfront
}
