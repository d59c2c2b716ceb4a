# What the mocked us-east-1 provider returns where the module needs a real-looking value.
mock_resource "aws_cloudwatch_log_group" {
  defaults = { arn = "arn:aws:logs:us-east-1:123456789012:log-group:/aws/vendedlogs/cloudfront/websocket-test" }
}

mock_resource "aws_cloudwatch_log_delivery_destination" {
  defaults = { arn = "arn:aws:logs:us-east-1:123456789012:delivery-destination:websocket-test-cloudfront" }
}
