from django.apps import AppConfig


class SecurityConfig(AppConfig):
    name = "security"
    verbose_name = "Security"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from django.core.signals import setting_changed
        from django.db.backends.signals import connection_created
        from django.db.models.signals import pre_save

        from security import checks, keyring
        from security.audit import chain_keys, install_sqlite_functions
        from security.blind_index import key_from_settings
        from security.fields import check_update_fields

        # Fail at start-up, in every process (web, worker, commands), on a missing or
        # malformed key: never run and write data that cannot be read back.
        keyring.get_keyring()
        key_from_settings()
        chain_keys()

        checks.register()
        connection_created.connect(install_sqlite_functions, dispatch_uid="security.sqlite_functions")
        pre_save.connect(check_update_fields, dispatch_uid="security.blind_index_update_fields")
        setting_changed.connect(checks.settings_changed, dispatch_uid="security.settings_changed")
