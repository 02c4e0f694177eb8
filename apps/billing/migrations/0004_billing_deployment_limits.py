"""The plans' deployment limits: how many deployments a team may have, and how many
replicas one deployment may run. Blank means no limit, so a plan an admin made keeps
working as it did; the seeded plans get the limits apps.billing.plans gives them."""

from django.db import migrations, models


def seed_limits(apps, schema_editor):
    from apps.billing.plans import PLANS

    plan_model = apps.get_model("billing", "Plan")
    for row in PLANS:
        plan_model.objects.filter(
            slug=row["slug"], max_deployments__isnull=True, max_replicas__isnull=True
        ).update(max_deployments=row["max_deployments"], max_replicas=row["max_replicas"])


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0003_usage_since_and_ended_at"),
    ]

    operations = [
        migrations.AddField(
            model_name="plan",
            name="max_deployments",
            field=models.PositiveSmallIntegerField(
                blank=True, help_text="Deployments the team may have. Blank: no limit.", null=True
            ),
        ),
        migrations.AddField(
            model_name="plan",
            name="max_replicas",
            field=models.PositiveSmallIntegerField(
                blank=True,
                help_text="Replicas one deployment may run at once (its maximum). Blank: no limit.",
                null=True,
            ),
        ),
        migrations.RunPython(seed_limits, migrations.RunPython.noop),
    ]
