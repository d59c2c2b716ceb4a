# What the mocked default provider returns where the module needs a real-looking value.
mock_resource "aws_cloudfront_distribution" {
  defaults = { arn = "arn:aws:cloudfront::123456789012:distribution/E2EXAMPLE0ABCD" }
}
