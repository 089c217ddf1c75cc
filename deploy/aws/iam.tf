# One role for nodes and builders, allowed exactly what start-wharf.sh and
# lifecycle-agent.sh do: read the three parameters (and the binary), drain
# this deployment's node group. Tenant containers cannot use it: the
# metadata service answers only the host (hop limit 1, IMDSv2 only) and
# iptables rejects containers' packets to it.

data "aws_iam_policy_document" "assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["ec2.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "node" {
  name_prefix        = "${var.name}-node-"
  assume_role_policy = data.aws_iam_policy_document.assume.json
}

resource "aws_iam_instance_profile" "node" {
  name_prefix = "${var.name}-node-"
  role        = aws_iam_role.node.name
}

data "aws_iam_policy_document" "node" {
  statement {
    sid       = "ReadSettings"
    actions   = ["ssm:GetParameter"]
    resources = [for n in values(local.parameter_names) : "arn:${local.partition}:ssm:${var.region}:${local.account}:parameter${n}"]
  }

  dynamic "statement" {
    for_each = var.kms_key_arn != "" ? [1] : []
    content {
      sid       = "DecryptSettings"
      actions   = ["kms:Decrypt"]
      resources = [var.kms_key_arn]
      condition {
        test     = "StringEquals"
        variable = "kms:ViaService"
        values   = ["ssm.${var.region}.amazonaws.com"]
      }
    }
  }

  dynamic "statement" {
    for_each = length(local.binary_s3) > 0 ? [1] : []
    content {
      sid       = "ReadBinary"
      actions   = ["s3:GetObject"]
      resources = ["arn:${local.partition}:s3:::${local.binary_s3[0]}/${local.binary_s3[1]}"]
    }
  }

  statement {
    sid = "DrainBeforeTermination"
    actions = [
      "autoscaling:CompleteLifecycleAction",
      "autoscaling:RecordLifecycleActionHeartbeat",
    ]
    resources = ["arn:${local.partition}:autoscaling:${var.region}:${local.account}:autoScalingGroup:*:autoScalingGroupName/${local.asg_name}"]
  }

  statement {
    sid       = "LeaveTheLoadBalancer"
    actions   = ["elasticloadbalancing:DeregisterTargets"]
    resources = [aws_lb_target_group.nodes.arn]
  }

  # DescribeTargetHealth supports no resource-level permission.
  statement {
    sid       = "WatchDeregistration"
    actions   = ["elasticloadbalancing:DescribeTargetHealth"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "node" {
  name   = "wharf-node"
  role   = aws_iam_role.node.id
  policy = data.aws_iam_policy_document.node.json
}

resource "aws_iam_role_policy_attachment" "session_manager" {
  count      = var.enable_session_manager ? 1 : 0
  role       = aws_iam_role.node.name
  policy_arn = "arn:${local.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}
