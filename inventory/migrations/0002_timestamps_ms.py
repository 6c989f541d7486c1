# Every model stores time as epoch milliseconds (*_ms): existing datetimes are copied, then dropped.

import profiles.timestamps
from profiles.timestamps import datetimes_to_ms
from django.db import migrations, models


class Migration(migrations.Migration):

    dependencies = [
        ('inventory', '0001_initial'),
    ]

    operations = [
        migrations.AlterModelOptions(
            name='sale',
            options={'ordering': ['-date', '-created_at_ms', '-id']},
        ),
        migrations.AddField(
            model_name='historicalitem',
            name='created_at_ms',
            field=models.BigIntegerField(default=profiles.timestamps.now_ms, editable=False),
        ),
        migrations.AddField(
            model_name='historicalitem',
            name='updated_at_ms',
            field=models.BigIntegerField(default=profiles.timestamps.now_ms, editable=False),
        ),
        migrations.AddField(
            model_name='item',
            name='created_at_ms',
            field=models.BigIntegerField(default=profiles.timestamps.now_ms, editable=False),
        ),
        migrations.AddField(
            model_name='item',
            name='updated_at_ms',
            field=models.BigIntegerField(default=profiles.timestamps.now_ms, editable=False),
        ),
        migrations.AddField(
            model_name='sale',
            name='created_at_ms',
            field=models.BigIntegerField(default=profiles.timestamps.now_ms, editable=False),
        ),
        datetimes_to_ms('inventory', {'item': ['created_at', 'updated_at'], 'historicalitem': ['created_at', 'updated_at'], 'sale': ['created_at']}),
        migrations.RemoveField(
            model_name='historicalitem',
            name='created_at',
        ),
        migrations.RemoveField(
            model_name='historicalitem',
            name='updated_at',
        ),
        migrations.RemoveField(
            model_name='item',
            name='created_at',
        ),
        migrations.RemoveField(
            model_name='item',
            name='updated_at',
        ),
        migrations.RemoveField(
            model_name='sale',
            name='created_at',
        ),
    ]
