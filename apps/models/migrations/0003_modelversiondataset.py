"""ModelVersion.dataset_versions goes through ModelVersionDataset, whose link outlives its
dataset version (SET_NULL) with a label. Every existing link is kept; its label is set only
where the version's team could read that dataset version (its own, or a public one), so a
label never names another team's private dataset."""

import django.db.models.deletion
from django.db import migrations, models


def copy_links(apps, schema_editor):
    ModelVersion = apps.get_model("models", "ModelVersion")
    Link = apps.get_model("models", "ModelVersionDataset")
    old = ModelVersion.dataset_versions_old.through
    rows = old.objects.select_related(
        "modelversion", "datasetversion", "datasetversion__dataset"
    ).order_by("pk")
    links = []
    for row in rows.iterator():
        used = row.datasetversion
        readable = (
            used.dataset.team_id == row.modelversion.team_id
            or used.dataset.visibility == "public"
        )
        links.append(
            Link(
                team_id=row.modelversion.team_id,
                version_id=row.modelversion_id,
                dataset_version_id=used.pk,
                label=f"{used.dataset.name} v{used.number}"[:200] if readable else "",
            )
        )
    Link.objects.bulk_create(links, batch_size=1000)


class Migration(migrations.Migration):
    dependencies = [
        ("models", "0002_save_ticket"),
        ("datasets", "0006_upload_purpose"),
        ("teams", "0002_invitation"),
    ]

    operations = [
        migrations.RenameField("modelversion", "dataset_versions", "dataset_versions_old"),
        migrations.CreateModel(
            name="ModelVersionDataset",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("label", models.CharField(blank=True, max_length=200)),
                (
                    "dataset_version",
                    models.ForeignKey(
                        null=True,
                        on_delete=django.db.models.deletion.SET_NULL,
                        related_name="+",
                        to="datasets.datasetversion",
                    ),
                ),
                (
                    "team",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="+",
                        to="teams.team",
                    ),
                ),
                (
                    "version",
                    models.ForeignKey(
                        on_delete=django.db.models.deletion.CASCADE,
                        related_name="dataset_links",
                        to="models.modelversion",
                    ),
                ),
            ],
            options={
                "ordering": ["label", "pk"],
                "constraints": [
                    models.UniqueConstraint(
                        fields=("version", "dataset_version"), name="models_version_dataset_once"
                    )
                ],
            },
        ),
        migrations.RunPython(copy_links, migrations.RunPython.noop),
        migrations.RemoveField("modelversion", "dataset_versions_old"),
        migrations.AddField(
            model_name="modelversion",
            name="dataset_versions",
            field=models.ManyToManyField(
                blank=True,
                related_name="+",
                through="models.ModelVersionDataset",
                through_fields=("version", "dataset_version"),
                to="datasets.datasetversion",
            ),
        ),
    ]
