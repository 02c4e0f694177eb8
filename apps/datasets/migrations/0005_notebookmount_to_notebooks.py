# Mounts moved to the notebooks app (apps.notebooks.models.NotebookMount): the model leaves
# this app's state here, and its table stays for notebooks 0003 to take over and rename.

from django.db import migrations


class Migration(migrations.Migration):

    dependencies = [
        ('datasets', '0004_version_file_team_blob'),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(
                    name='NotebookMount',
                ),
            ],
            database_operations=[],
        ),
    ]
