import django.db.models.deletion
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("machines", "0014_pool_slot_key"),
    ]

    operations = [
        migrations.AddField(
            model_name="placementrequest",
            name="prefer_host",
            field=models.ForeignKey(
                blank=True,
                null=True,
                on_delete=django.db.models.deletion.SET_NULL,
                related_name="+",
                to="machines.host",
            ),
        ),
    ]
