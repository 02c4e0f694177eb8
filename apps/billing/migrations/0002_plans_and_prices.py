from datetime import UTC, datetime

from django.db import migrations

# Prices before billing existed: the history starts here.
SINCE = datetime(2020, 1, 1, tzinfo=UTC)


def load(apps, schema_editor):
    from apps.billing.plans import PLANS

    Plan = apps.get_model("billing", "Plan")
    MachineType = apps.get_model("machines", "MachineType")
    MachinePrice = apps.get_model("billing", "MachinePrice")
    for row in PLANS:
        fields = {k: v for k, v in row.items() if k not in {"slug", "machines"}}
        plan, _ = Plan.objects.get_or_create(slug=row["slug"], defaults=fields)
        plan.machine_types.set(MachineType.objects.filter(slug__in=row["machines"]))
    for machine in MachineType.objects.all():
        MachinePrice.objects.get_or_create(
            machine_type=machine,
            effective_from=SINCE,
            defaults={"hourly_price": machine.hourly_price},
        )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_initial"),
        ("machines", "0010_free_tier"),
    ]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
