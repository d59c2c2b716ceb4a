"""Test only: checks that a `terraform show -json` plan holds what its deployment mode needs, and
nothing of the other modes. Used by plans.sh:

    python3 plan_mode.py MODE PLAN_JSON     (MODE: public, public-domain, vpc or vpc-domain)

Prints one line per fact checked; exits 1 naming the first fact that does not hold.
"""

import json
import sys


def main(mode, plan_path):
    with open(plan_path) as plan_file:
        plan = json.load(plan_file)
    planned = {change["address"]: change for change in plan["resource_changes"]}
    through_vpc = mode.startswith("vpc")
    with_domain = mode.endswith("domain")

    def after(address):
        if address not in planned:
            raise AssertionError(f"{address} is not in the plan")
        return planned[address]["change"]["after"]

    def unknown(address):
        return planned[address]["change"]["after_unknown"]

    def holds(condition, fact):
        if not condition:
            raise AssertionError(fact)
        print(f"  ok: {fact}")

    balancer = after("module.alb.aws_lb.this")
    holds(balancer["internal"] == through_vpc,
          f"the load balancer is {'internal' if through_vpc else 'internet-facing'}")

    listener = after("module.alb.aws_lb_listener.this")
    port, protocol = (443, "HTTPS") if with_domain else (80, "HTTP")
    holds((listener["port"], listener["protocol"]) == (port, protocol),
          f"its one listener is {protocol} on {port}")

    ingress = after("module.alb.aws_vpc_security_group_ingress_rule.from_cloudfront")
    if through_vpc:
        holds(ingress["prefix_list_id"] is None
              and unknown("module.alb.aws_vpc_security_group_ingress_rule.from_cloudfront").get("referenced_security_group_id"),
              "it admits the VPC origin's security group (read once CloudFront creates it), not the prefix list")
    else:
        holds(ingress["prefix_list_id"] and ingress["referenced_security_group_id"] is None,
              "it admits CloudFront's origin-facing prefix list")
    holds((ingress["from_port"], ingress["to_port"]) == (port, port), f"on port {port} only")

    vpc_origin = "module.cdn.aws_cloudfront_vpc_origin.this[0]"
    policy = "https-only" if with_domain else "http-only"
    (origin,) = after("module.cdn.aws_cloudfront_distribution.this")["origin"]
    if through_vpc:
        endpoint = after(vpc_origin)["vpc_origin_endpoint_config"][0]
        holds(endpoint["origin_protocol_policy"] == policy, f"the VPC origin speaks {policy}")
        holds(origin["custom_origin_config"] == [] and len(origin["vpc_origin_config"]) == 1,
              "the distribution's origin goes through the VPC origin")
    else:
        holds(vpc_origin not in planned, "there is no VPC origin")
        holds([config["origin_protocol_policy"] for config in origin["custom_origin_config"]] == [policy]
              and origin["vpc_origin_config"] == [],
              f"the distribution reaches the load balancer over the internet, {policy}")
    holds([header["name"] for header in origin["custom_header"]] == ["X-Origin-Verify"],
          "the secret header is on the origin either way")

    domain_resources = sorted(address for address in planned if address.startswith("module.domain[0]."))
    if with_domain:
        for expected in ("aws_acm_certificate.cloudfront", "aws_acm_certificate.origin",
                         'aws_route53_record.viewers["A"]', 'aws_route53_record.viewers["AAAA"]',
                         "aws_route53_record.origin"):
            holds(f"module.domain[0].{expected}" in planned, f"the domain has {expected}")
        holds(after("module.domain[0].aws_acm_certificate.cloudfront")["domain_name"] == "ws.example.com",
              "CloudFront's certificate is for the domain")
    else:
        holds(domain_resources == [], "no domain resources without domain_name")


if __name__ == "__main__":
    try:
        main(*sys.argv[1:])
    except AssertionError as failure:
        print(f"  FAILED: {failure}", file=sys.stderr)
        sys.exit(1)
    except KeyError as missing:
        print(f"  FAILED: the plan does not know {missing} (known only after apply?)", file=sys.stderr)
        sys.exit(1)
