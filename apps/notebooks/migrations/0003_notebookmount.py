# Mounts moved here from the datasets app: the model enters this app's state over the table
# datasets made (datasets 0003, left in place by datasets 0005), which is then renamed to
# this app's name. Its content type moves along, so its permissions keep their rows.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def content_type_move(apps, schema_editor, *, source='datasets', target='notebooks'):
    ContentType = apps.get_model('contenttypes', 'ContentType')
    if not ContentType.objects.filter(app_label=target, model='notebookmount').exists():
        ContentType.objects.filter(app_label=source, model='notebookmount').update(
            app_label=target
        )


def content_type_back(apps, schema_editor):
    content_type_move(apps, schema_editor, source='notebooks', target='datasets')


class Migration(migrations.Migration):

    dependencies = [
        ('contenttypes', '0002_remove_content_type_name'),
        ('datasets', '0005_notebookmount_to_notebooks'),
        ('notebooks', '0002_alter_notebooksession_exit_reason'),
        ('teams', '0002_invitation'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name='NotebookMount',
                    fields=[
                        ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                        ('name', models.SlugField(max_length=80)),
                        ('created_at', models.DateTimeField(auto_now_add=True)),
                        ('created_by', models.ForeignKey(null=True, on_delete=django.db.models.deletion.SET_NULL, related_name='+', to=settings.AUTH_USER_MODEL)),
                        ('notebook', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='mounts', to='notebooks.notebook')),
                        ('team', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='teams.team')),
                        ('version', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='+', to='datasets.datasetversion')),
                    ],
                    options={
                        'ordering': ['name'],
                        'constraints': [models.UniqueConstraint(fields=('notebook', 'name'), name='datasets_mount_name_once')],
                        'db_table': 'datasets_notebookmount',
                    },
                ),
            ],
            database_operations=[],
        ),
        # The table takes this app's name (a rename: its rows stay).
        migrations.AlterModelTable(
            name='notebookmount',
            table=None,
        ),
        migrations.RunPython(content_type_move, content_type_back),
    ]
