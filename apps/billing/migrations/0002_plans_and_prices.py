from django.db import migrations


def load(apps, schema_editor):
    from apps.billing.plans import load_plans

    load_plans(
        apps.get_model("billing", "Plan"),
        apps.get_model("machines", "MachineType"),
        apps.get_model("billing", "MachinePrice"),
    )


class Migration(migrations.Migration):
    dependencies = [
        ("billing", "0001_initial"),
        ("machines", "0010_free_tier"),
    ]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
