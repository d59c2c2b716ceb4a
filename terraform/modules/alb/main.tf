# Only CloudFront's origin-facing servers may reach the load balancer; the secret header then
# proves the request came through this distribution and not someone else's.
data "aws_ec2_managed_prefix_list" "cloudfront_origin_facing" {
  name = "com.amazonaws.global.cloudfront.origin-facing"
}

resource "aws_security_group" "this" {
  name        = "${var.name}-alb"
  description = "Load balancer of ${var.name}: HTTP from CloudFront only"
  vpc_id      = var.vpc_id

  tags = { Name = "${var.name}-alb" }
}

resource "aws_vpc_security_group_ingress_rule" "http_from_cloudfront" {
  #checkov:skip=CKV_AWS_260:False positive: the source is CloudFront's origin-facing prefix list, not 0.0.0.0/0 (the check does not read prefix_list_id).
  security_group_id = aws_security_group.this.id
  description       = "HTTP from CloudFront origin-facing servers"
  ip_protocol       = "tcp"
  from_port         = 80
  to_port           = 80
  prefix_list_id    = data.aws_ec2_managed_prefix_list.cloudfront_origin_facing.id
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
  #checkov:skip=CKV2_AWS_20:Redirecting to HTTPS would break the CloudFront origin, which speaks HTTP to the ALB (CloudFront terminates TLS; the ALB has no certificate because the service has no domain of its own).
  name               = var.name
  load_balancer_type = "application"
  internal           = false
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
resource "aws_lb_listener" "http" {
  #checkov:skip=CKV_AWS_2:Plain HTTP on purpose: CloudFront terminates TLS for viewers and is the only client (prefix list + secret header); the ALB has no certificate because the service has no domain of its own.
  #checkov:skip=CKV_AWS_103:No TLS on this listener, see CKV_AWS_2.
  load_balancer_arn = aws_lb.this.arn
  port              = 80
  protocol          = "HTTP"

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
  listener_arn = aws_lb_listener.http.arn
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
