from django.db import migrations


def load(apps, schema_editor):
    from apps.machines.catalogue import catalogue_rows

    MachineType = apps.get_model("machines", "MachineType")
    for row in catalogue_rows():
        MachineType.objects.update_or_create(slug=row["slug"], defaults=row["defaults"])


class Migration(migrations.Migration):
    dependencies = [("machines", "0001_initial")]

    operations = [migrations.RunPython(load, migrations.RunPython.noop)]
