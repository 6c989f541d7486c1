from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [("chat", "0001_initial")]

    operations = [
        migrations.RemoveIndex(model_name="turn", name="chat_turn_status_e87c95_idx"),
        migrations.RenameField(model_name="turn", old_name="heartbeat_at_ms", new_name="lease_until_ms"),
        migrations.AddIndex(
            model_name="turn", index=models.Index(fields=["status", "lease_until_ms"], name="chat_turn_status_lease")
        ),
    ]
