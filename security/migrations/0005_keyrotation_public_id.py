"""Key rotations get a public id (``krot_...``) so URLs never carry their integer key.

Three steps, because a callable default on AddField is evaluated once for all existing
rows: add the column nullable, give every existing row its own random id, then make it
unique and required.
"""

from django.db import migrations, models

import security.ids


def fill_public_ids(apps, schema_editor):
    KeyRotation = apps.get_model("security", "KeyRotation")
    for run in KeyRotation.objects.filter(public_id__isnull=True).only("pk").iterator():
        KeyRotation.objects.filter(pk=run.pk).update(public_id=security.ids.new_public_id("krot"))


class Migration(migrations.Migration):
    dependencies = [
        ("security", "0004_key_rotation_permission"),
    ]

    operations = [
        migrations.AddField(
            model_name="keyrotation",
            name="public_id",
            field=models.CharField(editable=False, max_length=40, null=True),
        ),
        migrations.RunPython(fill_public_ids, migrations.RunPython.noop),
        migrations.AlterField(
            model_name="keyrotation",
            name="public_id",
            field=models.CharField(
                default=security.ids._PublicIdFactory("krot"), editable=False, max_length=40, unique=True
            ),
        ),
    ]
