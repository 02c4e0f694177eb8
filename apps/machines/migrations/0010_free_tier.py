from django.db import migrations

FREE = ("free-cpu", "free-gpu")


def load(apps, schema_editor):
    from apps.machines.catalogue import catalogue_rows

    MachineType = apps.get_model("machines", "MachineType")
    for row in catalogue_rows():
        # Only the free tier is new here: the other types may have been edited since.
        if row["slug"] in FREE:
            MachineType.objects.get_or_create(slug=row["slug"], defaults=row["defaults"])


class Migration(migrations.Migration):
    dependencies = [("machines", "0009_placement_last_seen_at")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
