# Every model stores time as epoch milliseconds (*_ms): existing datetimes are copied, then dropped.

import profiles.timestamps
from profiles.timestamps import datetimes_to_ms
from django.conf import settings
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('chat', '0002_turn_lease'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='conversation',
            options={'ordering': ['-created_at_ms']},
        ),
        migrations.RemoveIndex(
            model_name='conversation',
            name='chat_conver_owner_i_3c7ae3_idx',
        ),
        migrations.AddField(
            model_name='conversation',
            name='created_at_ms',
            field=models.BigIntegerField(default=profiles.timestamps.now_ms, editable=False),
        ),
        migrations.AddField(
            model_name='conversation',
            name='updated_at_ms',
            field=models.BigIntegerField(default=profiles.timestamps.now_ms, editable=False),
        ),
        migrations.AddIndex(
            model_name='conversation',
            index=models.Index(fields=['owner', 'mount', '-created_at_ms'], name='chat_conv_owner_mount_created'),
        ),
        datetimes_to_ms('chat', {'conversation': ['created_at', 'updated_at']}),
        migrations.RemoveField(
            model_name='conversation',
            name='created_at',
        ),
        migrations.RemoveField(
            model_name='conversation',
            name='updated_at',
        ),
    ]
