"""Second factors at rest: TOTP secrets encrypted, backup codes under a keyed hash.

Existing rows are converted here (accounts.second_factor_storage): clear
django-otp TOTP devices become EncryptedTOTPDevice rows and are deleted;
unkeyed backup-code digests are wrapped in the keyed HMAC, so every user keeps
signing in with the same app and the same unused codes.
"""

import django.db.models.deletion
import django_otp.plugins.otp_totp.models
import security.fields
import security.ids
from django.conf import settings
from django.db import migrations, models


def move_to_protected_storage(apps, schema_editor):
    from accounts.second_factor_storage import keyed_backup_code_hashes, move_totp_devices

    using = schema_editor.connection.alias
    move_totp_devices(apps, using)
    keyed_backup_code_hashes(apps, using)


def move_back(apps, schema_editor):
    # TOTP secrets go back to django-otp's table (decrypted) so that a rollback locks no one
    # out; keyed backup-code hashes cannot be unwrapped: users issue a new set after a rollback.
    from accounts.second_factor_storage import move_totp_devices_back

    move_totp_devices_back(apps, schema_editor.connection.alias)


class Migration(migrations.Migration):

    dependencies = [
        ('accounts', '0002_apikey'),
        ('otp_totp', '0003_add_timestamps'),
        ('security', '0005_keyrotation_public_id'),
    ]

    operations = [
        # Rows already present were hashed without a key.
        migrations.AddField(
            model_name='backupcode',
            name='keyed',
            field=models.BooleanField(default=False, editable=False),
        ),
        migrations.CreateModel(
            name='EncryptedTOTPDevice',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text='The human-readable name of this device.', max_length=64)),
                ('confirmed', models.BooleanField(default=True, help_text='Is this device ready for use?')),
                ('throttling_failure_timestamp', models.DateTimeField(blank=True, default=None, help_text='A timestamp of the last failed verification attempt. Null if last attempt succeeded.', null=True)),
                ('throttling_failure_count', models.PositiveIntegerField(default=0, help_text='Number of successive failed attempts.')),
                ('created_at', models.DateTimeField(auto_now_add=True, help_text='The date and time when this device was initially created in the system.', null=True)),
                ('last_used_at', models.DateTimeField(blank=True, help_text='The most recent date and time this device was used.', null=True)),
                ('public_id', models.CharField(default=security.ids._PublicIdFactory('totp'), editable=False, max_length=40, unique=True)),
                ('key', security.fields.EncryptedTextField(default=django_otp.plugins.otp_totp.models.default_key, help_text='A hex-encoded secret key of up to 40 bytes (encrypted at rest).', subject=security.fields.EncryptionSubject('user', 'user__public_id'), validators=[django_otp.plugins.otp_totp.models.key_validator])),
                ('step', models.PositiveSmallIntegerField(default=30)),
                ('t0', models.BigIntegerField(default=0)),
                ('digits', models.PositiveSmallIntegerField(choices=[(6, 6), (8, 8)], default=6)),
                ('tolerance', models.PositiveSmallIntegerField(default=1)),
                ('drift', models.SmallIntegerField(default=0)),
                ('last_t', models.BigIntegerField(default=-1, help_text='The time step of the last verified code; only later ones are accepted.')),
                ('user', models.ForeignKey(help_text='The user that this device belongs to.', on_delete=django.db.models.deletion.CASCADE, to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'TOTP device',
                'abstract': False,
            },
        ),
        migrations.RunPython(move_to_protected_storage, move_back, elidable=False),
        migrations.AlterField(
            model_name='backupcode',
            name='keyed',
            field=models.BooleanField(default=True, editable=False),
        ),
    ]
